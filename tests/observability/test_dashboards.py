"""The dashboards against a real Graphite: every panel target returns data after an end-to-end
run whose metrics went through a real statsd into carbon.

One run feeds them all (module fixture ``run``): ``recengine trainer`` (a subprocess, embedded
backends: file events, SQLite users, file artifacts) on a small generated stream; the index
service and the API under gunicorn, sent /recommend (user, item, popular, a bad request, an
unknown path, and with the index stopped: degraded) and POST /events traffic; and the operator's
real reconcile handler, over the versions the trainer published, against an in-memory
Kubernetes (rollouts that succeed, roll back, fail, and versions the quality gate rejects).
Every service sends to the ``graphite`` fixture's statsd.

Set ``RECENGINE_SAVE_DASHBOARD_PNGS=DIR`` to keep the rendered panels.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kube_fake import FakeKube

from recengine import dashboards, serve
from recengine.artifacts import open_artifact_store
from recengine.config import Settings
from recengine.index.app import pod_name
from recengine.synth import SynthConfig, write_stream
from recengine_operator.config import Config
from recengine_operator.handlers.handle_recengine import reconcile
from recengine_operator.handlers.runtime import Runtime
from recengine_operator.metrics import open_operator_metrics

pytestmark = pytest.mark.observability

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 12_000
RANGE = "-15min"


@dataclass
class Run:
    settings: Settings
    lines: int
    versions: list[int]
    operator_events: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _run_trainer(settings: Settings, log: Path) -> None:
    argv = [sys.executable, "-m", "recengine.cli", "--log-level", "WARNING", "trainer",
            "--data-dir", settings.data_dir, "--follow", "false",
            "--metrics-url", settings.metrics_url, "--batch-size", "1000",
            "--publish-every-events", "4000", "--flush-interval-s", "0.2"]
    with log.open("wb") as out:
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=300,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("RECENGINE_")})
    assert r.returncode == 0, log.read_text()[-3000:]


def _traffic(api: str, user: str, item: str) -> None:
    s = requests.Session()
    for _ in range(3):  # three statsd flushes' worth
        for _ in range(10):
            assert s.get(f"{api}/recommend", params={"user_id": user}).json()["based_on"] == "user"
        r = s.get(f"{api}/recommend", params={"user_id": "stranger", "item_id": item})
        assert r.json()["based_on"] == "item"
        assert s.get(f"{api}/recommend").json()["based_on"] == "popular"
        assert s.get(f"{api}/recommend", params={"k": "many"}).status_code == 400
        assert s.get(f"{api}/no-such-endpoint").status_code == 404
        good = {"user_id": user, "item_id": item, "event": "view", "ts": time.time()}
        r = s.post(f"{api}/events", json=[good, {"user_id": user}])
        assert r.status_code == 202 and r.json()["accepted"] == 1
        assert s.post(f"{api}/events", json=[{"item_id": item}]).status_code == 400
        time.sleep(1.0)


def _drive_operator(kube: FakeKube, runtime: Runtime, versions: list[int]) -> list[tuple]:
    """Rollouts over the published versions, through the real reconcile handler."""
    log = logging.getLogger("test.operator")
    events: list[tuple[str, str]] = []
    runtime.post_event = lambda obj, e: events.append((obj["metadata"]["name"], e.reason))
    t0 = datetime.now(UTC).replace(microsecond=0)  # status times have whole seconds

    def tick(name: str, seconds: float) -> None:
        reconcile(runtime, "recs", name, log, now=t0 + timedelta(seconds=seconds))

    for name in ("movies", "books", "music", "films"):
        tick(name, 0)
    # books: rolled out; movies: the newest version never becomes ready, back to the first;
    # music: its first rollout fails with nothing to roll back to; films: every version fails
    # the quality gate (minEvaluated).
    kube.roll_out("recs", "books")
    tick("books", 20)
    tick("movies", 61)
    tick("music", 61)
    kube.roll_out("recs", "movies")
    tick("movies", 70)
    for name in ("movies", "books", "music", "films"):
        tick(name, 75)  # nothing new: only reconcile_ms and the current version
    return events


@pytest.fixture(scope="module")
def run(graphite, tmp_path_factory: pytest.TempPathFactory) -> Run:
    data = tmp_path_factory.mktemp("observability")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    stream = data / "events.jsonl"
    write_stream(stream, SynthConfig(events=EVENTS, users=600, items=400, seed=3,
                                     malformed_rate=0.01,
                                     start_ts=time.time() - 10 * 3600))
    lines = stream.read_text().splitlines()
    settings = Settings.load({"data_dir": str(data), "metrics_url": graphite.statsd_url},
                             env={})
    _run_trainer(settings, data / "trainer.log")
    seconds["trainer"] = time.perf_counter() - t

    counts: Counter[str] = Counter()
    items: Counter[str] = Counter()
    for line in lines:
        try:
            ev = json.loads(line)
            counts[ev["user_id"]] += 1
            items[ev["item_id"]] += 1
        except (ValueError, KeyError, TypeError):
            continue
    user, item = counts.most_common(1)[0][0], items.most_common(1)[0][0]

    t = time.perf_counter()
    index_port, api_port = serve.free_port(), serve.free_port()
    settings = settings.replace(index_url=f"http://127.0.0.1:{index_port}")
    index = serve.start("index", settings, index_port, log_path=str(data / "index.log"))
    api = serve.start("api", settings, api_port, log_path=str(data / "api.log"))
    try:
        serve.wait_ready(f"http://127.0.0.1:{index_port}/readyz", index)
        serve.wait_ready(f"http://127.0.0.1:{api_port}/readyz", api)
        _traffic(f"http://127.0.0.1:{api_port}", user, item)
        serve.stop(index)  # the index is down: answers are degraded, not failed
        for _ in range(5):
            r = requests.get(f"http://127.0.0.1:{api_port}/recommend", params={"user_id": user})
            assert r.status_code == 200 and r.json()["degraded"] == ["index"]
    finally:
        serve.stop(index)
        serve.stop(api)
    seconds["serving"] = time.perf_counter() - t

    versions = _versions(settings)
    assert len(versions) >= 2, versions
    kube = FakeKube()
    for name, kw in (("movies", {"serving": versions[0]}), ("books", {}), ("music", {}),
                     ("films", {"min_evaluated": 10**9})):
        kube.add_engine("recs", name, settings.artifacts_url, **kw)
    runtime = Runtime(config=Config(), kube=kube,  # type: ignore[arg-type]
                      metrics=open_operator_metrics(
                          Config.from_env({"RECENGINE_METRICS_URL": graphite.statsd_url})))
    result = Run(settings, len(lines), versions, seconds=seconds)
    result.operator_events = _drive_operator(kube, runtime, versions)
    runtime.metrics.close()
    return result


def _versions(settings: Settings) -> list[int]:
    store = open_artifact_store(settings.url("artifacts"), settings.name)
    try:
        return sorted(store.versions())
    finally:
        store.close()


def test_the_operator_went_through_every_outcome(run: Run):
    reasons = Counter(r for _, r in run.operator_events)
    for reason in ("RollingOut", "RolloutSucceeded", "RollingBack", "RolledBack",
                   "RolloutFailed", "QualityGateRejected"):
        assert reasons[reason], run.operator_events


def test_every_dashboard_target_returns_data_points(run: Run, graphite):
    """A panel that queries a name no service emits fails here."""
    pending = [(d["title"], p["title"], t) for d in dashboards.load(
        ROOT / "charts" / "recengine" / "dashboards").values()
        for p, t in dashboards.targets(d)]
    assert len(pending) > 50
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        pending = [x for x in pending if not dashboards.datapoints(graphite.url, x[2], RANGE)]
        if pending:
            time.sleep(1.0)
    assert not pending, "no data points:\n" + "\n".join(" / ".join(x) for x in pending)


def _total(graphite, target: str) -> float:
    return sum(v for v, _ in graphite.datapoints(target, from_=RANGE))


def _last(graphite, target: str) -> float:
    return graphite.datapoints(target, from_=RANGE)[-1][0]


def test_the_numbers_are_the_runs_numbers(run: Run, graphite):
    graphite.wait_for_datapoints("stats.gauges.recengine.operator.current_version.recs.books")
    # Every line of the stream was counted once, through statsd's per-flush counts.
    assert _total(graphite, "stats_counts.recengine.trainer.events_consumed") == run.lines
    applied = _total(graphite, "stats_counts.recengine.trainer.events_applied")
    rejected = _total(graphite, "stats_counts.recengine.trainer.events_rejected")
    assert applied == EVENTS and applied + rejected == run.lines
    newest = run.versions[-1]
    assert _last(graphite, "stats.gauges.recengine.trainer.version") == newest
    assert _last(graphite, f"stats.gauges.recengine.index.version_by_pod.{pod_name()}") == newest
    assert 0 < _last(graphite, "stats.gauges.recengine.trainer.recall_at_k") < 1
    assert 0 < _last(graphite, "stats.gauges.recengine.trainer.freshness_s") < 24 * 3600
    based_on = {s["target"].rsplit(".", 1)[-1]
                for s in graphite.render("stats_counts.recengine.api.based_on.*", from_=RANGE)}
    assert based_on == {"user", "item", "popular"}
    assert _total(graphite, "stats_counts.recengine.api.degraded_by.index") == 5
    assert _total(graphite, "stats_counts.recengine.api.cache_hit") > 0
    assert _total(graphite, "stats_counts.recengine.api.cache_miss") > 0
    # The operator: one success of 20 s, current versions as rolled.
    assert _total(graphite, "stats_counts.recengine.operator.rollouts_succeeded") == 1
    assert _last(graphite, "stats.timers.recengine.operator.rollout_ms.upper") == 20_000
    assert _last(graphite, "stats.gauges.recengine.operator.current_version.recs.books") == newest
    assert _last(graphite,
                 "stats.gauges.recengine.operator.current_version.recs.movies") == run.versions[0]


def test_dashboards_render_to_png_through_graphite(run: Run, graphite, tmp_path: Path):
    out = tmp_path / "png"
    r = subprocess.run([sys.executable, "-m", "recengine.cli", "dashboards", "render",
                        "--out", str(out), "--graphite", graphite.url, "--from", "-2min"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [Path(line) for line in r.stdout.split()]
    panels = sum(1 for d in dashboards.build().values() for _ in dashboards.panels(d))
    assert len(files) == panels
    for f in files:
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f
        assert len(data) > 5000, f  # axes, legend and lines, not an empty "no data" image
    keep = os.environ.get("RECENGINE_SAVE_DASHBOARD_PNGS")
    if keep:
        shutil.copytree(out, keep, dirs_exist_ok=True)


def test_dashboards_validate_against_grafanas_schema():
    """The JSON Schema generated from @grafana/schema's Dashboard type (npm, cached)."""
    import jsonschema

    r = subprocess.run(["bash", str(ROOT / "tools" / "observability" / "dashboard-schema.sh")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    schema = json.loads(Path(r.stdout.strip()).read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    folder = ROOT / "charts" / "recengine" / "dashboards"
    boards: dict[str, Any] = {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert len(boards) == 5
    for name, board in boards.items():
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(board)]
        assert not errors, f"{name}:\n" + "\n".join(errors[:20])
    # The schema does check something: a panel without its type is refused.
    broken = json.loads(json.dumps(boards["overview.json"]))
    del broken["panels"][0]["type"]
    assert list(validator.iter_errors(broken))
