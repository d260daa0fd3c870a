"""The operator's metrics: one count per transition, the rollout time, the current version."""

from __future__ import annotations

from typing import Any

from support.kube_objects import applied, at, catalog, deployment, engine_spec, manifest, progressed

from recengine.backends.statsd import StatsdMetrics
from recengine.metrics import Metrics
from recengine_operator.config import Config
from recengine_operator.metrics import open_operator_metrics, record
from recengine_operator.reconcile import plan


class Recorder(Metrics):
    def __init__(self) -> None:
        super().__init__("operator")
        self.sent: list[tuple[str, str, float]] = []

    def incr(self, name: str, count: int = 1) -> None:
        self.sent.append(("c", name, count))

    def gauge(self, name: str, value: float) -> None:
        self.sent.append(("g", name, value))

    def timing(self, name: str, ms: float) -> None:
        self.sent.append(("ms", name, ms))


class Engine:
    """A RecEngine whose plans are applied and recorded, as the handler does."""

    def __init__(self, dep: dict[str, Any], cat: Any, status: dict | None = None) -> None:
        self.dep, self.cat, self.status = dep, cat, status or {}
        self.metrics = Recorder()

    def tick(self, seconds: float) -> list[tuple[str, str, float]]:
        before = len(self.metrics.sent)
        p = plan(engine_spec(), self.status, 1, self.dep, catalog=self.cat, now=at(seconds))
        record(self.metrics, "recs", "movies.v1", self.status, p, at(seconds))
        merged = {**self.status, **p.status_patch(self.status)}
        self.status = {k: v for k, v in merged.items() if v is not None}
        self.dep = applied(self.dep, p.deployment_patch)
        return self.metrics.sent[before:]


GAUGE = "current_version.recs.movies_v1"


def test_a_rollout_counts_its_start_and_success_with_its_duration():
    e = Engine(deployment(None), catalog(manifest(1)))
    assert e.tick(0) == [("c", "rollouts_started", 1)]
    e.dep = progressed(e.dep)
    assert e.tick(42) == [("c", "rollouts_succeeded", 1), ("ms", "rollout_ms", 42000.0),
                          ("g", GAUGE, 1)]
    assert e.tick(50) == [("g", GAUGE, 1)]  # nothing new: only the gauge, again


def test_a_rollback_counts_the_failed_rollout_and_the_completed_rollback():
    e = Engine(deployment(1), catalog(manifest(1), manifest(2)))
    e.tick(0)  # adopts version 1, rolls out 2
    e.dep = progressed(e.dep, updated=1, available=3, total=4)
    sent = e.tick(301)
    assert ("c", "rollouts_rolled_back", 1) in sent
    assert not any(name == "rollout_ms" for _, name, _ in sent)
    e.dep = progressed(e.dep)
    assert ("c", "rollbacks_completed", 1) in e.tick(320)


def test_a_failed_first_rollout_and_a_rejected_version_are_counted():
    e = Engine(deployment(None), catalog(manifest(1)))
    e.tick(0)
    e.dep = progressed(e.dep, updated=0, available=0, total=1, observed=True)
    assert e.tick(400) == [("c", "rollouts_failed", 1)]

    e = Engine(deployment(1), catalog(manifest(1, recall=0.30), manifest(2, recall=0.10)))
    assert ("c", "versions_rejected", 1) in e.tick(0)


def test_metrics_url_comes_from_recengine_metrics_url():
    assert type(open_operator_metrics(Config.load(env={}))) is Metrics
    cfg = Config.load(env={"RECENGINE_METRICS_URL": "statsd://127.0.0.1:8125"})
    m = open_operator_metrics(cfg)
    assert isinstance(m, StatsdMetrics) and m.prefix == "recengine.operator"
    m.close()
