"""The Grafana dashboards, built from the metric registry.

:func:`build` returns the five dashboards (Overview, Serving, Index, Trainer, Operator) as
Grafana dashboard JSON models; ``tools/gen_dashboards.py`` writes them to
``charts/recengine/dashboards/``, where the chart provisions them. Every Graphite target is
written with :func:`series`, which looks the metric up in :mod:`recengine.metric_names`,
so a dashboard cannot query a name the services do not emit (``tests/observability`` checks
each target against a real Graphite after an end-to-end run).

Drawing the panels and checking their targets against a graphite-web is
:mod:`recengine.graphite_render` (``recengine dashboards render|check``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recengine.metric_names import metric

DATASOURCE = {"type": "graphite", "uid": "recengine-graphite"}
SCHEMA_VERSION = 41  # Grafana 11.6, the chart's Grafana
TAG = "recengine"
GRID_WIDTH = 24


def series(service: str, name: str, field: str | None = None, **values: str) -> str:
    """The Graphite path of a registered metric (see :meth:`Metric.graphite`)."""
    return metric(service, name).graphite(field, **values)


def alias(target: str, name: str) -> str:
    return f"alias({target},{json.dumps(name)})"


def percentiles(service: str, name: str, label: str = "", **values: str) -> list[str]:
    """p50, p90 and p99 of a timer (statsd's ``upper_<pct>``), and its mean."""
    prefix = f"{label} " if label else ""
    out = [alias(series(service, name, f"upper_{p}", **values), f"{prefix}p{p}")
           for p in (50, 90, 99)]
    out.append(alias(series(service, name, "mean", **values), f"{prefix}mean"))
    return out


@dataclass
class Panel:
    title: str
    targets: Sequence[str]
    description: str
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    bars: bool = False
    stack: bool = False
    calc: str = "lastNotNull"
    """The reduction of a ``stat`` panel (``lastNotNull``, ``sum`` ...)."""
    decimals: int | None = None


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit, "color": {"mode": "palette-classic"},
                                "thresholds": {"mode": "absolute",
                                               "steps": [{"color": "green", "value": None}]}}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if p.bars else "line", "lineWidth": 1, "fillOpacity": 10,
            "showPoints": "never", "spanNulls": True,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"}}
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True,
                       "calcs": []},
            "tooltip": {"mode": "multi", "sort": "none"}}
    else:
        options = {"reduceOptions": {"calcs": [p.calc], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                   "orientation": "auto", "textMode": "value_and_name"}
    return {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "targets": [{"refId": chr(ord("A") + n), "datasource": dict(DATASOURCE),
                     "target": t, "textEditor": True} for n, t in enumerate(p.targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def dashboard(uid: str, title: str, description: str, panels: Sequence[Panel]) -> dict[str, Any]:
    """A Grafana dashboard of ``panels``, laid out left to right, top to bottom."""
    out, x, y, row_h = [], 0, 0, 0
    for n, p in enumerate(panels, start=1):
        if x + p.width > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        out.append(_panel(p, n, x, y))
        x += p.width
        row_h = max(row_h, p.height)
    return {
        "uid": uid, "title": title, "description": description, "tags": [TAG],
        "editable": False, "graphTooltip": 1, "timezone": "browser", "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "time": {"from": "now-3h", "to": "now"},
        "timepicker": {}, "templating": {"list": []}, "annotations": {"list": []},
        "links": [{"title": "recengine", "type": "dashboards", "tags": [TAG], "asDropdown": True,
                   "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "",
                   "tooltip": "", "url": ""}],
        "panels": out,
    }


# --------------------------------------------------------------------------------------------
def overview_dashboard() -> dict[str, Any]:
    return dashboard("recengine-overview", "recengine / Overview",
                     "Do events flow, is the model getting better or worse, which version is "
                     "served, how fresh is it.", [
        Panel("Events per second", [
            alias(series("trainer", "events_consumed"), "read by the trainer"),
            alias(series("trainer", "events_applied"), "applied"),
            alias(series("api", "events_accepted"), "accepted by POST /events"),
        ], "Events read from the stream and learned from by the trainer, and events accepted "
           "by the API.", unit="reqps"),
        Panel("Dead-letter queue (rejected events per second)", [
            alias(series("trainer", "events_rejected"), "trainer -> DLQ"),
            alias(series("api", "events_rejected"), "refused by POST /events"),
        ], "Invalid records the trainer wrote to the dead-letter queue, and invalid events "
           "POST /events refused.", unit="reqps"),
        Panel("Recall@10: model vs popularity", [
            alias(series("trainer", "recall_at_k"), "model (served ranking)"),
            alias(series("trainer", "plain_popularity_recall_at_k"), "all-time popularity"),
            alias(series("trainer", "decayed_popularity_recall_at_k"), "decayed popularity"),
        ], "Rolling recall@k measured test-then-train on the stream: the ranking the API "
           "serves against both popularity baselines on the same events (all-time counts and "
           "counts decayed over events).", unit="percentunit"),
        Panel("Lift over popularity", [
            alias(f"divideSeries({series('trainer', 'recall_at_k')},"
                  f"{series('trainer', 'popularity_recall_at_k')})", "model / popularity"),
        ], "How many times the stronger popularity baseline's recall the model reaches (above "
           "1: personalisation pays).", unit="none"),
        Panel("Embedding version", [
            alias(series("trainer", "version"), "published"),
            alias(series("index", "version"), "served"),
        ], "The newest version the trainer published and the version the index serves.",
           kind="stat", width=8, height=6, decimals=0, unit="none"),
        Panel("Freshness", [
            alias(series("trainer", "freshness_s"), "newest event applied"),
        ], "Wall clock minus the time of the newest event the trainer applied.",
           kind="stat", width=8, height=6, unit="s"),
        Panel("/recommend p99", [
            alias(series("api", "request.{endpoint}.{status}", "upper_99", endpoint="recommend",
                         status="200"), "p99"),
        ], "99th percentile latency of successful GET /recommend.", kind="stat", width=8,
           height=6, unit="ms"),
    ])


def serving_dashboard() -> dict[str, Any]:
    req = "request.{endpoint}.{status}"
    return dashboard("recengine-serving", "recengine / Serving",
                     "The recommender API: latency, traffic, errors, what answers are based "
                     "on, cache and degraded answers.", [
        Panel("GET /recommend latency (200)", percentiles("api", req, endpoint="recommend",
                                                          status="200"),
              "Percentiles of successful /recommend requests (statsd percentThreshold).",
              unit="ms"),
        Panel("p99 latency by endpoint", [
            f"groupByNode({series('api', req, 'upper_99')},5,'maxSeries')",
        ], "99th percentile latency per endpoint (the slowest status of each).", unit="ms"),
        Panel("Requests per second by endpoint", [
            f"groupByNode({series('api', req, 'count_ps')},5,'sumSeries')",
        ], "Request rate per endpoint, every status.", unit="reqps"),
        Panel("Responses by status class", [
            f"aliasByNode({series('api', 'status.{class}xx')},4)",
        ], "Responses per second by HTTP status class.", unit="reqps", stack=True),
        Panel("Error ratio", [
            alias(f"asPercent(sumSeries({series('api', 'status.{class}xx', **{'class': '{4,5}'})}),"
                  f"sumSeries({series('api', 'status.{class}xx')}))", "4xx + 5xx"),
        ], "Share of responses with a 4xx or 5xx status.", unit="percent"),
        Panel("POST /events latency (202)", percentiles("api", req, endpoint="events",
                                                        status="202"),
              "Percentiles of accepted POST /events batches.", unit="ms"),
        Panel("Answers by based_on", [
            f"aliasByNode({series('api', 'based_on.{based_on}')},4)",
        ], "/recommend answers per second by what they are based on: the user, an item, or "
           "popular now.", unit="reqps", stack=True),
        Panel("Degraded answers", [
            alias(series("api", "degraded"), "degraded (all)"),
            f"aliasByNode({series('api', 'degraded_by.{part}')},4)",
        ], "Answers per second served while a backend was down, and by which part.",
           unit="reqps"),
        Panel("User cache hit ratio", [
            alias(f"asPercent({series('api', 'cache_hit', 'count')},"
                  f"sumSeries({series('api', 'cache_hit', 'count')},"
                  f"{series('api', 'cache_miss', 'count')}))", "hit ratio"),
        ], "Share of /recommend calls for a user whose record was in the cache.",
           unit="percent"),
        Panel("User cache hits and misses", [
            alias(series("api", "cache_hit"), "hits"),
            alias(series("api", "cache_miss"), "misses"),
        ], "Lookups per second of a user's record in the cache.", unit="reqps"),
    ])


def index_dashboard() -> dict[str, Any]:
    req = "request.{endpoint}.{status}"
    return dashboard("recengine-index", "recengine / Index",
                     "The index service: search latency, the version each pod serves, items.", [
        Panel("POST /search latency (200)", percentiles("index", req, endpoint="search",
                                                         status="200"),
              "Percentiles of one search (candidates for a user, ranked).", unit="ms"),
        Panel("POST /similar latency (200)", percentiles("index", req, endpoint="similar",
                                                          status="200"),
              "Percentiles of one similar-items lookup.", unit="ms"),
        Panel("Searches per second", [
            alias(f"sumSeries({series('index', req, 'count_ps', endpoint='search')})", "search"),
            alias(f"sumSeries({series('index', req, 'count_ps', endpoint='similar')})",
                  "similar"),
        ], "Calls per second of the index service, all pods, every status.", unit="reqps"),
        Panel("Embedding version per pod", [
            f"aliasByNode({series('index', 'version_by_pod.{pod}')},5)",
        ], "The version each index pod serves: during a rollout two versions show.",
           unit="none", decimals=0),
        Panel("Served vs published version", [
            alias(series("index", "version"), "served"),
            alias(series("trainer", "version"), "published"),
        ], "The version the index serves against the newest one published.", unit="none",
           decimals=0),
        Panel("Items in the served version", [
            alias(series("index", "items"), "items"),
        ], "Items in the embedding version the index serves.", kind="stat", width=6,
           unit="short"),
        Panel("Version load time", [
            alias(series("index", "load_ms", "upper"), "load"),
        ], "Loading and verifying the version when a pod starts.", kind="stat", width=6,
           unit="ms"),
    ])


def trainer_dashboard() -> dict[str, Any]:
    return dashboard("recengine-trainer", "recengine / Trainer",
                     "The incremental trainer: batch time, throughput, checkpoints, publishing, "
                     "table sizes.", [
        Panel("Micro-batch time", percentiles("trainer", "batch_ms"),
              "Decoding, dead-lettering and learning one micro-batch.", unit="ms"),
        Panel("Throughput", [
            alias(series("trainer", "events_per_second"), "learning speed (events/s of learning)"),
            alias(series("trainer", "events_applied"), "applied (events/s)"),
        ], "How fast the learner runs, and how many events it applies per second.",
           unit="short"),
        Panel("Checkpoint and publish time", [
            alias(series("trainer", "checkpoint_ms", "upper"), "checkpoint"),
            alias(series("trainer", "publish_ms", "upper"), "publish a version"),
        ], "Writing a checkpoint; building and publishing an embedding version.", unit="ms"),
        Panel("Checkpoints and versions published", [
            alias(series("trainer", "checkpoints", "count"), "checkpoints"),
            alias(series("trainer", "versions_published", "count"), "versions published"),
        ], "Checkpoints written and versions published per statsd flush.", unit="short",
           bars=True),
        Panel("User vectors: flush and store writes", [
            alias(series("trainer", "flush_ms", "upper"), "flush"),
            alias(series("trainer", "user_store_write_ms", "upper"), "user store write"),
        ], "Folding touched users' vectors, and one background batch write to the user store.",
           unit="ms"),
        Panel("User writes pending", [
            alias(series("trainer", "user_writes_pending"), "pending"),
        ], "User records waiting for the user store writer.", unit="short"),
        Panel("Users and items", [
            alias(series("trainer", "users"), "users"),
            alias(series("trainer", "items"), "items"),
        ], "Users and items the model knows.", unit="short"),
        Panel("Trainer lease epoch", [
            alias(series("trainer", "lease_epoch"), "epoch"),
        ], "Epoch of the trainer lease held by the replica that learns: each step up is a "
           "failover (the active replica died) or a handover (it stopped cleanly).",
           unit="short"),
        Panel("Sketch and table sizes", [
            alias(series("trainer", "sketch_size"), "popularity sketch items"),
            alias(series("trainer", "sketch_categories"), "category sketches"),
            alias(series("trainer", "neighbour_pairs"), "neighbour pairs"),
        ], "Items tracked by the popularity sketch, category sketches, and item-to-item "
           "neighbour pairs of the last published version.", unit="short"),
        Panel("Self-tuning: recall@10 of every raced ranking", [
            f"aliasByNode({series('trainer', 'tuning_recall_{slot}')},4)",
            alias(series("trainer", "decayed_popularity_recall_at_k"), "decayed popularity"),
            alias(series("trainer", "plain_popularity_recall_at_k"), "all-time popularity"),
        ], "The population of rankings the trainer races on the same evaluated events: "
           "tuning_recall_0 is the ranking in force (served); the others are challengers, each "
           "over the events since it joined the race.", unit="percentunit"),
        Panel("Self-tuning: the ranking in force", [
            alias(series("trainer", "ranking_blend"), "model weight"),
            alias(series("trainer", "ranking_pop_blend"), "popularity weight"),
            alias(series("trainer", "ranking_recency_decay"), "recency decay"),
        ], "The weights of the ranking the index serves; a step is a switch to a challenger "
           "that won its paired test.", unit="none"),
        Panel("Self-tuning: recent items used and switches", [
            alias(series("trainer", "ranking_recent_used"), "recent items that score"),
            alias(series("trainer", "ranking_switches"), "switches so far"),
        ], "How many of a user's recent items the ranking in force reads, and how many times "
           "a challenger has replaced it.", unit="short"),
    ])


def operator_dashboard() -> dict[str, Any]:
    outcomes = [
        alias(series("operator", "rollouts_started", "count"), "started"),
        alias(series("operator", "rollouts_succeeded", "count"), "succeeded"),
        alias(series("operator", "rollouts_rolled_back", "count"), "rolled back"),
        alias(series("operator", "rollbacks_completed", "count"), "rollbacks completed"),
        alias(series("operator", "rollouts_failed", "count"), "failed"),
        alias(series("operator", "versions_rejected", "count"), "rejected by the quality gate"),
    ]
    return dashboard("recengine-operator", "recengine / Operator",
                     "Rollouts of embedding versions to the index pods, and their outcomes.", [
        Panel("Rollouts and outcomes", outcomes,
              "Rollouts started, succeeded, rolled back at the progress deadline, rollbacks "
              "completed, failed with nothing to roll back to, and versions the quality gate "
              "rejected.", unit="short", bars=True, width=16),
        Panel("Outcomes in range", outcomes, "Totals over the selected time range.",
              kind="stat", width=8, calc="sum", decimals=0),
        Panel("Rollout time", [
            alias(series("operator", "rollout_ms", "upper"), "rollout"),
        ], "From the start of a rollout until every index pod serves the version.", unit="ms"),
        Panel("Current version per RecEngine", [
            f"aliasByNode({series('operator', 'current_version.{namespace}.{name}')},5,6)",
        ], "status.currentVersion of each RecEngine (namespace.name).", unit="none",
           decimals=0),
        Panel("Reconciliation time", percentiles("operator", "reconcile_ms"),
              "One reconciliation of a RecEngine (reads, plan, patches).", unit="ms"),
    ])


def build() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name (``overview.json`` ...)."""
    return {f"{name}.json": fn() for name, fn in
            (("overview", overview_dashboard), ("serving", serving_dashboard),
             ("index", index_dashboard), ("trainer", trainer_dashboard),
             ("operator", operator_dashboard))}


def to_json(dash: dict[str, Any]) -> str:
    return json.dumps(dash, indent=2) + "\n"


def load(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The dashboards of ``directory`` (``*.json``), or the built-in ones."""
    if directory is None:
        return build()
    return {p.name: json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))}


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those inside rows included."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def targets(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(panel, Graphite target) for every target of every panel."""
    for p in panels(dash):
        for t in p.get("targets", []):
            if t.get("target"):
                yield p, t["target"]
