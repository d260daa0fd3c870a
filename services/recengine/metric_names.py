"""Every statsd metric the services emit, in one registry.

``docs/metrics.md`` and the Grafana dashboards (``charts/recengine/dashboards/``) are generated
from this table (``tools/gen_metrics_docs.py``, ``tools/gen_dashboards.py``), and a unit test
reads the services' ``metrics.incr / gauge / timing / timer / hold`` calls and checks that
they emit exactly the names listed here, so the docs and the dashboards cannot drift from what
is sent. ``tests/observability`` then renders every dashboard target from a real Graphite
after an end-to-end run.

A metric is sent as ``recengine.<service>.<name>``. A ``{placeholder}`` in a name is filled in
when it is sent (an endpoint, a status, a pod name) and is ``*`` in Graphite queries. statsd
(0.9, legacy namespace) writes to Graphite:

=========  =================================================================================
counter    ``stats.<metric>`` (per second) and ``stats_counts.<metric>`` (per flush)
timer      ``stats.timers.<metric>.<field>``: ``mean``, ``upper``, ``lower``, ``count``,
           ``count_ps`` (per second), ``upper_50`` / ``upper_90`` / ``upper_99`` (percentiles,
           with statsd's ``percentThreshold: [50, 90, 99]``) ...
gauge      ``stats.gauges.<metric>``
=========  =================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "recengine"
COUNTER, TIMER, GAUGE = "counter", "timer", "gauge"
KINDS = (COUNTER, TIMER, GAUGE)
SERVICES = ("trainer", "index", "api", "operator")
#: statsd's ``percentThreshold`` the dashboards rely on (``upper_50``, ``upper_90``, ...).
PERCENTILES = (50, 90, 99)

_PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


@dataclass(frozen=True)
class Metric:
    service: str
    name: str
    """As passed to :class:`recengine.metrics.Metrics` (may hold ``{placeholders}``)."""
    kind: str
    meaning: str

    @property
    def statsd(self) -> str:
        """The full statsd name, ``recengine.<service>.<name>``."""
        return f"{PREFIX}.{self.service}.{self.name}"

    @property
    def shape(self) -> str:
        """The name with every placeholder as ``{}`` (what the code's f-strings reduce to)."""
        return _PLACEHOLDER.sub("{}", self.name)

    def fill(self, **values: str) -> str:
        """The statsd name with placeholders filled from ``values``, ``*`` for the others."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(0)[1:-1], "*"), self.statsd)

    def graphite(self, field: str | None = None, **values: str) -> str:
        """The Graphite path statsd writes this metric to.

        Counters: ``field`` ``None`` (per second) or ``"count"`` (per flush). Timers: ``field``
        is one of statsd's timer fields (``mean``, ``upper_99``, ``count_ps`` ...). Gauges: no
        field.
        """
        name = self.fill(**values)
        if self.kind == COUNTER:
            if field not in (None, "count"):
                raise ValueError(f"{self.statsd}: a counter has no field {field!r}")
            return f"stats_counts.{name}" if field == "count" else f"stats.{name}"
        if self.kind == TIMER:
            if not field:
                raise ValueError(f"{self.statsd}: a timer needs a field (mean, upper_99, ...)")
            return f"stats.timers.{name}.{field}"
        if field:
            raise ValueError(f"{self.statsd}: a gauge has no field")
        return f"stats.gauges.{name}"


def _m(service: str, kind: str, name: str, meaning: str) -> Metric:
    return Metric(service, name, kind, meaning)


METRICS: tuple[Metric, ...] = (
    # --- trainer -------------------------------------------------------------------------------
    _m("trainer", COUNTER, "events_consumed", "records read from the event stream, valid or not"),
    _m("trainer", COUNTER, "events_applied", "valid events the model learned from"),
    _m("trainer", COUNTER, "events_rejected",
       "invalid records, written to the dead-letter queue (the DLQ rate)"),
    _m("trainer", GAUGE, "events_per_second",
       "learning throughput of the last micro-batch (events / seconds spent learning it)"),
    _m("trainer", TIMER, "batch_ms", "decoding, dead-lettering and learning one micro-batch"),
    _m("trainer", TIMER, "flush_ms",
       "folding the vectors of the users touched since the last flush and handing them to the "
       "cache and the user store writer"),
    _m("trainer", TIMER, "user_store_write_ms",
       "one background batch write of user records to the user store"),
    _m("trainer", GAUGE, "user_writes_pending", "user records waiting for the user store writer"),
    _m("trainer", GAUGE, "recall_at_k",
       "rolling recall@k of the served ranking, measured test-then-train on the stream"),
    _m("trainer", GAUGE, "popularity_recall_at_k",
       "rolling recall@k of the stronger popularity baseline (all-time or decayed) on the "
       "same events"),
    _m("trainer", GAUGE, "plain_popularity_recall_at_k",
       "rolling recall@k of plain all-time popularity (counts) on the same events"),
    _m("trainer", GAUGE, "decayed_popularity_recall_at_k",
       "rolling recall@k of decayed popularity (half-life in events) on the same events"),
    _m("trainer", GAUGE, "ranking_blend",
       "self-tuning: the model's weight in the ranking in force"),
    _m("trainer", GAUGE, "ranking_pop_blend",
       "self-tuning: popularity's weight in the ranking in force"),
    _m("trainer", GAUGE, "ranking_recency_decay",
       "self-tuning: the recency decay of the ranking in force"),
    _m("trainer", GAUGE, "ranking_recent_used",
       "self-tuning: how many recent items score in the ranking in force"),
    _m("trainer", GAUGE, "ranking_switches",
       "self-tuning: how many times a challenger replaced the ranking in force"),
    _m("trainer", GAUGE, "tuning_recall_{slot}",
       "self-tuning: recall@k of each raced ranking (slot 0: the one in force) on the "
       "events it was compared on"),
    _m("trainer", GAUGE, "freshness_s",
       "wall clock minus the time of the newest event applied, in seconds"),
    _m("trainer", GAUGE, "users", "users the model knows"),
    _m("trainer", GAUGE, "items", "items the model knows"),
    _m("trainer", GAUGE, "sketch_size", "items tracked by the overall popularity sketch"),
    _m("trainer", GAUGE, "sketch_categories", "categories with a popularity sketch of their own"),
    _m("trainer", GAUGE, "neighbour_pairs",
       "item-to-item neighbour pairs in the last published co-occurrence table"),
    _m("trainer", TIMER, "checkpoint_ms", "writing one checkpoint and committing its position"),
    _m("trainer", COUNTER, "checkpoints", "checkpoints written"),
    _m("trainer", COUNTER, "checkpoints_unusable",
       "checkpoints skipped at restart as torn, corrupt or unreadable (an older one is used)"),
    _m("trainer", TIMER, "publish_ms", "building and publishing one embedding version"),
    _m("trainer", COUNTER, "versions_published", "embedding versions published"),
    _m("trainer", GAUGE, "version", "number of the newest embedding version published"),
    _m("trainer", GAUGE, "lease_epoch",
       "epoch of the trainer lease the learning replica holds (a step up: a failover or a "
       "handover to another replica)"),
    _m("trainer", COUNTER, "backend_errors",
       "outages of a backend the trainer needs (each retried with backoff until it is back)"),
    _m("trainer", COUNTER, "cache_errors", "cache writes skipped because the cache was down"),
    # --- index service -------------------------------------------------------------------------
    _m("index", TIMER, "request.{endpoint}.{status}",
       "request latency by endpoint (``search``: the user's candidates, ranked; ``similar``: "
       "items like the given ones; ``readyz`` ..., ``unknown`` for unrouted paths) and HTTP "
       "status; ``count_ps`` is the request rate"),
    _m("index", COUNTER, "status.{class}xx", "responses by status class (2xx, 4xx, 5xx)"),
    _m("index", TIMER, "load_ms", "loading and verifying the embedding version at start"),
    _m("index", GAUGE, "version", "embedding version served (last pod to report wins)"),
    _m("index", GAUGE, "version_by_pod.{pod}",
       "embedding version served by each index pod (``pod``: its hostname, dots as _)"),
    _m("index", GAUGE, "items", "items in the served embedding version"),
    # --- recommender API -----------------------------------------------------------------------
    _m("api", TIMER, "request.{endpoint}.{status}",
       "request latency by endpoint (``recommend``, ``events``, ``readyz`` ..., ``unknown`` "
       "for unrouted paths) and HTTP status; ``count_ps`` is the request rate"),
    _m("api", COUNTER, "status.{class}xx", "responses by status class (2xx, 4xx, 5xx)"),
    _m("api", COUNTER, "based_on.{based_on}",
       "/recommend answers by what they are based on: ``user``, ``item`` or ``popular``"),
    _m("api", COUNTER, "cache_hit", "/recommend for a user found in the cache"),
    _m("api", COUNTER, "cache_miss", "/recommend for a user not in the cache (user store next)"),
    _m("api", COUNTER, "degraded", "/recommend answers served with a backend down"),
    _m("api", COUNTER, "degraded_by.{part}",
       "degraded answers by the part that was down: ``index``, ``cache`` or ``users``"),
    _m("api", COUNTER, "unavailable",
       "/recommend answered 503: both the cache and the user store were down"),
    _m("api", COUNTER, "events_accepted", "events accepted by POST /events"),
    _m("api", COUNTER, "events_rejected", "events refused by POST /events (invalid)"),
    # --- operator ------------------------------------------------------------------------------
    _m("operator", TIMER, "reconcile_ms", "one reconciliation of a RecEngine"),
    _m("operator", COUNTER, "rollouts_started", "rollouts of a new embedding version started"),
    _m("operator", COUNTER, "rollouts_succeeded", "rollouts completed: every index pod serves it"),
    _m("operator", COUNTER, "rollouts_rolled_back",
       "rollouts not complete by progressDeadlineSeconds, rolled back to the last good version"),
    _m("operator", COUNTER, "rollbacks_completed", "rollbacks to the last good version completed"),
    _m("operator", COUNTER, "rollouts_failed",
       "rollouts not complete by the deadline with no good version to roll back to"),
    _m("operator", COUNTER, "versions_rejected", "versions that failed the quality gate"),
    _m("operator", TIMER, "rollout_ms", "a successful rollout, from its start to completion"),
    _m("operator", GAUGE, "current_version.{namespace}.{name}",
       "embedding version every index pod of a RecEngine serves (status.currentVersion)"),
)

_BY_KEY = {(m.service, m.name): m for m in METRICS}


def metric(service: str, name: str) -> Metric:
    """The registered metric ``name`` of ``service`` (``KeyError`` names it if unknown)."""
    try:
        return _BY_KEY[service, name]
    except KeyError:
        raise KeyError(f"no metric recengine.{service}.{name} in recengine.metric_names") from None


#: Fields statsd 0.9 writes for a timer (``_<pct>`` ones for each of :data:`PERCENTILES`).
TIMER_FIELDS = ("mean", "upper", "lower", "count", "count_ps", "sum", "sum_squares", "median",
                "std", *(f"{f}_{p}" for p in PERCENTILES
                         for f in ("upper", "mean", "sum", "sum_squares", "count")))
_GRAPHITE_PATH = re.compile(r"\bstats(?:_counts)?\.(?:[A-Za-z0-9_.*\[\]-]|\{[^}]*\})+")


def graphite_paths(target: str) -> list[str]:
    """The statsd-written Graphite paths a render target (functions and all) reads."""
    return _GRAPHITE_PATH.findall(target)


def resolve(path: str) -> tuple[Metric, str | None]:
    """The registered metric a Graphite path (globs allowed) reads, and the timer field.

    ``ValueError`` says why when the path matches no metric of the right kind: the way a
    dashboard target that queries a name nobody emits is caught before it is deployed.
    """
    heads = (("stats_counts.", COUNTER), ("stats.timers.", TIMER), ("stats.gauges.", GAUGE),
             ("stats.", COUNTER))
    head, kind = next(((h, k) for h, k in heads if path.startswith(h)), ("", ""))
    if not head:
        raise ValueError(f"{path}: not a statsd path (stats., stats_counts., ...)")
    rest = path[len(head):]
    field = None
    if kind == TIMER:
        rest, _, field = rest.rpartition(".")
        if field not in TIMER_FIELDS:
            raise ValueError(f"{path}: {field!r} is not a statsd timer field")
    # A glob stands for any value: * -> x, {a,b} -> a, [..] -> x.
    sample = re.sub(r"\{([^,}]*)[^}]*\}", r"\1", rest.replace("*", "x"))
    sample = re.sub(r"\[[^\]]*\]", "x", sample)
    for m in METRICS:
        if m.kind != kind:
            continue
        pattern = "".join("[^.]+" if part.startswith("{") else re.escape(part)
                          for part in re.split(r"(\{[a-z_]*\})", m.statsd))
        if re.fullmatch(pattern, sample):
            return m, field
    raise ValueError(f"{path}: no {kind} in recengine.metric_names is written there")


def _check() -> None:
    seen = set()
    for m in METRICS:
        assert m.service in SERVICES and m.kind in KINDS, m
        assert (m.service, m.name) not in seen, m
        seen.add((m.service, m.name))


_check()
