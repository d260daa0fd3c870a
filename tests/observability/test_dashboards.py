"""The dashboards against a real Graphite: every panel target returns data after an end-to-end
run whose metrics went through a real statsd into carbon.

One run feeds them all (module fixture ``run``): ``recengine trainer`` (a subprocess, embedded
backends: file events, SQLite users, file artifacts) on a small generated stream; the index
service and the API under gunicorn, sent /recommend (user, item, popular, a bad request, an
unknown path, and with the index stopped: degraded) and POST /events traffic; and the operator
(``kopf run -m recengine_operator``, a real process) on a real API server (module fixture
``cluster``: etcd, kube-apiserver, controller-manager, scheduler, kwok playing the kubelet),
rolling RecEngines over the versions the trainer published: rollouts that succeed, a version
whose pods never become ready (rolled back), versions the quality gate rejects, and, in a
second namespace, a first rollout that fails with nothing to roll back to. Every service
sends to the ``graphite`` fixture's statsd.

Set ``RECENGINE_SAVE_DASHBOARD_PNGS=DIR`` to keep the rendered panels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from support.gunicorn import gunicorn_services
from support.k8s import ControlPlane
from support.servers import tail
from support.waiting import wait_until

from recengine import dashboards, graphite_render, serve
from recengine.backends.files import FileArtifactStore
from recengine.config import Settings
from recengine.index.app import pod_name
from recengine.synth import SynthConfig, write_stream

pytestmark = [pytest.mark.observability, pytest.mark.k8s,
              pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 12_000
RANGE = "-15min"
#: Namespaces of the RecEngines: books, movies and films in NS; music in NS2.
NS, NS2 = "recs", "recs-failing"
#: progressDeadlineSeconds of every RecEngine (the CRD's minimum).
DEADLINE_S = 10


@dataclass
class Served:
    settings: Settings
    lines: int
    versions: list[int]
    """The versions the trainer published."""
    seconds: dict[str, float]

    @property
    def unready(self) -> int:
        """The version after the newest: kwok never readies its pods."""
        return self.versions[-1] + 1


@dataclass
class Run:
    settings: Settings
    lines: int
    versions: list[int]
    unready: int
    operator_events: list[tuple[str, str, str]] = field(default_factory=list)
    """(namespace, RecEngine, reason) of every Event posted on a RecEngine."""
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The status of every RecEngine (by name) once the scenario was over."""
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


# --- the operator on a real API server -------------------------------------------------------
def _operator_log(log: Path) -> Callable[[], str]:
    return lambda: f"--- operator log\n{tail(log)}"


def _engine(ns: str, name: str, artifacts: Path, *, min_evaluated: int = 0,
            **embedding: object) -> str:
    """A RecEngine ``name``, its Secret and its index Deployment (2 pods, container ``index``)."""
    index = f"{name}-index"
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": index, "namespace": ns},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": index}},
                  "template": {"metadata": {"labels": {"app": index}},
                               "spec": {"containers": [{"name": "index",
                                                        "image": "recengine-index:test"}]}}}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": f"{name}-backends", "namespace": ns},
         "stringData": {"RECENGINE_ARTIFACTS_URL": f"file://{artifacts}",
                        "RECENGINE_NAME": name}},
        {"apiVersion": "recengine.io/v1alpha1", "kind": "RecEngine",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"artifacts": {"secretRef": f"{name}-backends"},
                  "index": {"deployment": index, "progressDeadlineSeconds": DEADLINE_S},
                  "embedding": {"policy": "Latest",
                                "qualityGate": {"metric": "recall_at_10", "maxDrop": 1.0,
                                                "minEvaluated": min_evaluated},
                                **embedding}}}]})


def _status(cluster: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "recengine", name, "-n", ns, "-o", "json")
    return json.loads(out).get("status") or {}


def _results(status: dict[str, Any]) -> list[tuple[int, str]]:
    return [(h["version"], h["result"]) for h in status.get("history") or ()]


def _events(cluster: ControlPlane) -> list[tuple[str, str, str]]:
    out = cluster.kubectl("get", "events", "--all-namespaces", "--field-selector",
                          "involvedObject.kind=RecEngine", "-o", "json")
    return [(e["involvedObject"]["namespace"], e["involvedObject"]["name"], e["reason"])
            for e in json.loads(out)["items"] for _ in range(e.get("count") or 1)]


def _expected(versions: list[int]) -> Counter[str]:
    """The transitions of the scenario of :func:`_drive_operator`."""
    return Counter({
        "RollingOut": 4,  # books and movies to the newest; movies to the unready; music
        "RolloutSucceeded": 2,  # books, movies
        "RollingBack": 1,  # movies, at the deadline of the unready version
        "RolledBack": 1,  # movies, back on the newest trained version
        "RolloutFailed": 1,  # music: nothing to roll back to
        "QualityGateRejected": len(versions),  # films: every version, once
    })


def _drive_operator(cluster: ControlPlane, statsd_url: str,
                    served: Served) -> tuple[list[tuple[str, str, str]], dict[str, dict]]:
    """The operator, a real process, over the versions the trainer published.

    books: rolled out to the newest version. movies (on a copy of the trainer's store): the
    same, then a version whose pods never become ready, rolled back at the deadline. films:
    every version fails the quality gate (minEvaluated). music (in NS2): pinned to the unready
    version, its first rollout fails with nothing to roll back to.
    """
    newest, unready = served.versions[-1], served.unready
    data = Path(served.settings.data_dir)
    store_dir = Path(served.settings.url("artifacts").file_path)
    copy = data / "movies-artifacts"
    shutil.copytree(store_dir / "versions", copy / "versions")
    cluster.kubectl("apply", "-f", str(ROOT / "charts" / "recengine" / "crds"))
    for ns in (NS, NS2):
        cluster.kubectl("create", "namespace", ns)
    log = data / "operator.log"
    env = {k: v for k, v in cluster.env().items() if not k.startswith("RECENGINE_")}
    env.update(RECENGINE_OPERATOR_INTERVAL_S="1", RECENGINE_OPERATOR_IDLE_S="0",
               RECENGINE_METRICS_URL=statsd_url)
    with log.open("ab") as out:
        op = subprocess.Popen([sys.executable, "-m", "kopf", "run", "-m", "recengine_operator",
                               "--standalone", "--namespace", NS, "--namespace", NS2],
                              env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        cluster.kubectl("apply", "-f", "-", stdin=_engine(NS, "books", store_dir))
        cluster.kubectl("apply", "-f", "-", stdin=_engine(NS, "films", store_dir,
                                                         min_evaluated=10**9))
        cluster.kubectl("apply", "-f", "-", stdin=_engine(NS, "movies", copy))
        for name in ("books", "movies"):
            wait_until(lambda n=name: _status(cluster, NS, n).get("currentVersion") == newest,  # type: ignore[misc]
                       f"{name} serving version {newest}", 60, detail=_operator_log(log))
        store = FileArtifactStore(copy)
        blobs = {p.name: p.read_bytes() for p in (copy / "versions" / f"{newest:09d}").iterdir()
                 if p.name != "manifest.json"}
        assert store.publish(blobs, store.manifest(newest)) == unready
        cluster.kubectl("apply", "-f", "-", stdin=_engine(NS2, "music", copy, policy="Pinned",
                                                         version=unready))

        def over() -> dict[str, dict] | None:
            st = {n: _status(cluster, ns, n) for ns, n in
                  ((NS, "books"), (NS, "films"), (NS, "movies"), (NS2, "music"))}
            movies = st["movies"]
            back = ((unready, "RolledBack") in _results(movies) and not movies.get("rollback")
                    and not movies.get("rolloutStartedAt")
                    and movies.get("currentVersion") == newest)
            failed = (unready, "Failed") in _results(st["music"])
            return st if back and failed else None

        statuses = wait_until(over, "movies rolled back and music failed", 3 * DEADLINE_S + 30,
                              detail=_operator_log(log))
        want = _expected(served.versions)

        def posted() -> list[tuple[str, str, str]] | None:
            events = _events(cluster)
            reasons = Counter(r for *_, r in events)
            return events if all(reasons[r] >= n for r, n in want.items()) else None

        events = wait_until(posted, f"the operator's Events {dict(want)}", 30,
                            detail=_operator_log(log))
        return events, statuses
    finally:
        op.terminate()
        try:
            op.wait(20)
        except subprocess.TimeoutExpired:
            op.kill()
            op.wait()


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(graphite, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """The trainer, then the index and the API under gunicorn with traffic, all stopped."""
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
    versions = sorted(FileArtifactStore(settings.url("artifacts").file_path).versions())
    assert len(versions) >= 2, versions
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
    with gunicorn_services(settings, data) as services:
        settings = services.settings
        _traffic(services.api, user, item)
        serve.stop(services.index_proc)  # the index is down: answers are degraded, not failed
        for _ in range(5):
            r = requests.get(f"{services.api}/recommend", params={"user_id": user})
            assert r.status_code == 200 and r.json()["degraded"] == ["index"]
    seconds["serving"] = time.perf_counter() - t
    return Served(settings, len(lines), versions, seconds)


@pytest.fixture(scope="module")
def cluster(served: Served) -> Iterator[ControlPlane]:
    """A control plane of this module's own, whose kwok never readies ``served.unready``.

    Started after the gunicorn services stopped: its components hold many client connections
    on 127.0.0.1, whose ephemeral ports ``support.net.free_port()`` might hand out meanwhile.
    """
    t = time.perf_counter()
    cp = ControlPlane(unready_versions=(str(served.unready),))
    try:
        cp.start()
        served.seconds["cluster"] = time.perf_counter() - t
        yield cp
    finally:
        cp.cleanup()


@pytest.fixture(scope="module")
def run(graphite, served: Served, cluster: ControlPlane) -> Run:
    t = time.perf_counter()
    events, statuses = _drive_operator(cluster, graphite.statsd_url, served)
    served.seconds["operator"] = time.perf_counter() - t
    return Run(served.settings, served.lines, served.versions, served.unready, events,
               statuses, served.seconds)


# --- tests -----------------------------------------------------------------------------------
def test_the_operator_went_through_every_outcome(run: Run):
    print("seconds:", {k: round(v, 1) for k, v in run.seconds.items()})
    reasons = Counter(r for *_, r in run.operator_events)
    for reason, n in _expected(run.versions).items():
        assert reasons[reason] == n, (reason, run.operator_events)
    newest, unready = run.versions[-1], run.unready
    st = run.statuses
    assert st["books"]["currentVersion"] == newest and st["books"]["phase"] == "Ready"
    assert _results(st["books"]) == [(newest, "Succeeded")]
    assert st["movies"]["currentVersion"] == newest
    assert _results(st["movies"]) == [(newest, "Succeeded"), (unready, "RolledBack")]
    assert _results(st["films"]) == [(v, "Rejected") for v in reversed(run.versions)]
    assert st["films"].get("currentVersion") is None
    assert _results(st["music"]) == [(unready, "Failed")]
    assert st["music"].get("currentVersion") is None
    assert {(ns, n) for ns, n, r in run.operator_events if r == "RolloutFailed"} == {
        (NS2, "music")}


def test_every_dashboard_target_returns_data_points(run: Run, graphite):
    """A panel that queries a name no service emits fails here."""
    pending = [(d["title"], p["title"], t) for d in dashboards.load(
        ROOT / "charts" / "recengine" / "dashboards").values()
        for p, t in dashboards.targets(d)]
    assert len(pending) > 50
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        pending = [x for x in pending if not graphite_render.datapoints(graphite.url, x[2], RANGE)]
        if pending:
            time.sleep(1.0)
    assert not pending, "no data points:\n" + "\n".join(" / ".join(x) for x in pending)


def _total(graphite, target: str) -> float:
    return sum(v for v, _ in graphite.datapoints(target, from_=RANGE))


def _last(graphite, target: str) -> float:
    return graphite.datapoints(target, from_=RANGE)[-1][0]


def _seconds(entry: dict[str, Any]) -> float:
    def t(k: str) -> datetime:
        return datetime.fromisoformat(entry[k].replace("Z", "+00:00"))
    return (t("finishedAt") - t("startedAt")).total_seconds()


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

    # The operator: one count per transition it posted an Event for (the process stopped
    # before this test, so the last flush is the last word).
    reasons = Counter(r for *_, r in run.operator_events)
    for metric, reason in (("rollouts_started", "RollingOut"),
                           ("rollouts_succeeded", "RolloutSucceeded"),
                           ("rollouts_rolled_back", "RollingBack"),
                           ("rollbacks_completed", "RolledBack"),
                           ("rollouts_failed", "RolloutFailed"),
                           ("versions_rejected", "QualityGateRejected")):
        target = f"stats_counts.recengine.operator.{metric}"
        graphite.wait_for_datapoints(
            target, lambda p, n=reasons[reason]: sum(v for v, _ in p) >= n)  # type: ignore[misc]
        assert _total(graphite, target) == reasons[reason], metric
    # Two successful rollouts (books, movies), each timed from its start (whole seconds in the
    # status) to the reconciliation that saw it complete.
    assert _total(graphite, "stats.timers.recengine.operator.rollout_ms.count") == 2
    longest = max(_seconds(h) for s in run.statuses.values() for h in s.get("history") or ()
                  if h["result"] == "Succeeded")
    upper = max(v for v, _ in graphite.datapoints("stats.timers.recengine.operator.rollout_ms"
                                                  ".upper", from_=RANGE))
    assert longest * 1000 <= upper < (longest + 2) * 1000, (longest, upper)
    assert _total(graphite, "stats.timers.recengine.operator.reconcile_ms.count") >= 4
    assert _last(graphite, "stats.gauges.recengine.operator.current_version.recs.books") == newest
    assert _last(graphite, "stats.gauges.recengine.operator.current_version.recs.movies") == newest
    shown = {s["target"] for s in graphite.render(
        "aliasByNode(stats.gauges.recengine.operator.current_version.*.*,5,6)", from_=RANGE)}
    assert shown == {"recs.books", "recs.movies"}  # films and music never served a version


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
