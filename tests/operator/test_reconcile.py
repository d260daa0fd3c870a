"""Whole reconciliations, planned from plain dicts: rollout, success, rollback, gate, resume."""

from __future__ import annotations

from typing import Any

from support.kube_objects import (
    T0,
    applied,
    at,
    catalog,
    deployment,
    engine_spec,
    manifest,
    progressed,
)

from recengine_operator.reconcile import Catalog, Plan, plan, with_problem
from recengine_operator.rollout import ANNOTATION


class World:
    """A RecEngine, its Deployment and its artifact store, advanced by applying each plan."""

    def __init__(self, dep: dict[str, Any], cat: Catalog | None, spec: dict | None = None,
                 status: dict | None = None) -> None:
        self.spec = spec or engine_spec()
        self.generation = 1
        self.status: dict[str, Any] = status or {}
        self.dep = dep
        self.cat = cat

    def tick(self, seconds: float, **kw: Any) -> Plan:
        p = plan(self.spec, self.status, self.generation, self.dep, catalog=self.cat,
                 now=at(seconds), **kw)
        merged = {**self.status, **p.status_patch(self.status)}
        self.status = {k: v for k, v in merged.items() if v is not None}
        self.dep = applied(self.dep, p.deployment_patch)
        return p

    def condition(self, ctype: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == ctype)

    def reasons(self, p: Plan) -> list[str]:
        return [e.reason for e in p.events]


def serving(version: int, **kw: Any) -> dict[str, Any]:
    """Status of a RecEngine whose index serves ``version`` after a successful rollout."""
    w = World(deployment(version), catalog(manifest(version)), **kw)
    w.tick(0)
    assert w.status["currentVersion"] == version  # adopted
    return w.status


def test_first_rollout_rolls_the_newest_passing_version():
    w = World(deployment(None), catalog(manifest(1), manifest(2), manifest(3)))
    p = w.tick(0)
    assert p.deployment_patch["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION: "3"}
    assert w.status["targetVersion"] == 3
    assert w.status["rolloutStartedAt"] == "2025-01-01T12:00:00Z"
    assert w.status["phase"] == "Progressing"
    assert w.condition("Progressing")["status"] == "True"
    assert w.condition("Ready")["status"] == "False"
    assert w.reasons(p) == ["RollingOut"]
    assert "currentVersion" not in w.status


def test_the_same_observed_state_twice_plans_nothing_the_second_time():
    w = World(deployment(7, max_unavailable=1), catalog(manifest(7), manifest(8)),
              status=serving(7))
    first = w.tick(10)
    assert first.deployment_patch is not None
    again = plan(w.spec, w.status, w.generation, w.dep, catalog=w.cat, now=at(15))
    assert again.deployment_patch is None
    assert again.status_patch(w.status) == {}
    assert again.events == []


def test_the_same_observed_state_gives_the_same_plan():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    a = plan(w.spec, w.status, 1, w.dep, catalog=w.cat, now=at(5))
    b = plan(w.spec, w.status, 1, w.dep, catalog=w.cat, now=at(5))
    assert a == b


def test_rollout_succeeds_and_records_current_and_last_good():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(10)
    assert w.tick(20).deployment_patch is None  # in progress: nothing to do
    w.dep = progressed(w.dep)
    p = w.tick(30)
    assert w.reasons(p) == ["RolloutSucceeded"]
    assert w.status["currentVersion"] == w.status["lastGoodVersion"] == 8
    assert w.status["targetVersion"] == 8
    assert "rolloutStartedAt" not in w.status
    assert w.status["phase"] == "Ready"
    assert w.status["history"][-1] == {
        "version": 8, "result": "Succeeded", "startedAt": "2025-01-01T12:00:10Z",
        "finishedAt": "2025-01-01T12:00:30Z",
        "reason": "all 3 pods of movies-index serve version 8"}
    assert w.condition("Ready")["message"] == "index pods serve embedding version 8"
    assert w.condition("Progressing")["status"] == "False"
    assert w.tick(35).events == []


def test_rollout_rolls_back_when_pods_never_become_ready():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(0)
    w.dep = progressed(w.dep, updated=1, available=3, total=4)
    assert w.tick(300).deployment_patch is None  # not yet: the deadline is 300 s
    p = w.tick(301)
    assert w.reasons(p) == ["RollingBack"]
    template = p.deployment_patch["spec"]["template"]
    assert template["metadata"]["annotations"] == {ANNOTATION: "7"}
    assert w.status["targetVersion"] == 7
    assert w.status["rollback"]["failedVersion"] == 8
    assert w.status["failedVersions"] == [8]
    assert w.status["history"][-1]["result"] == "RolledBack"
    assert w.status["history"][-1]["version"] == 8
    assert w.status["phase"] == "Degraded"
    degraded = w.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    assert "not ready after 301 s" in degraded["message"]
    assert w.condition("Progressing")["reason"] == "RollingBack"

    w.dep = progressed(w.dep)
    p = w.tick(320)
    assert w.reasons(p) == ["RolledBack"]
    assert w.status["currentVersion"] == 7 and "rollback" not in w.status
    assert w.status["phase"] == "Degraded"  # until a good version rolls out

    # Latest does not try the failed version again ...
    p = w.tick(400)
    assert p.deployment_patch is None and p.events == []
    # ... until a newer one appears.
    w.cat = catalog(manifest(7), manifest(8), manifest(9))
    p = w.tick(500)
    assert w.reasons(p) == ["RollingOut"] and w.status["targetVersion"] == 9
    w.dep = progressed(w.dep)
    p = w.tick(510)
    assert w.reasons(p) == ["RolloutSucceeded", "Recovered"]
    assert w.status["phase"] == "Ready"
    assert w.condition("Degraded")["status"] == "False"


def test_a_resumed_rollout_uses_the_recorded_start_time():
    # A restarted operator finds a rollout its predecessor started 250 s ago.
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(0)
    started = w.status["rolloutStartedAt"]
    w.dep = progressed(w.dep, updated=0, available=3, total=3)
    restarted = World(w.dep, None, status=dict(w.status))  # artifact store not even reachable
    assert restarted.tick(250).deployment_patch is None
    assert restarted.status["rolloutStartedAt"] == started
    p = restarted.tick(301)
    assert [e.reason for e in p.events] == ["RollingBack"]


def test_a_rollout_is_followed_without_the_artifact_store():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(0)
    w.cat = None
    w.dep = progressed(w.dep)
    p = plan(w.spec, w.status, 1, w.dep, catalog=None, catalog_error="down", now=at(5))
    assert [e.reason for e in p.events] == ["RolloutSucceeded"]
    assert p.status["currentVersion"] == 8


def test_a_failed_first_rollout_with_nothing_to_roll_back_to_is_reported():
    w = World(deployment(None), catalog(manifest(1)))
    w.tick(0)
    w.dep = progressed(w.dep, updated=0, available=0, total=1, observed=True)
    p = w.tick(400)
    assert w.reasons(p) == ["RolloutFailed"]
    assert p.deployment_patch is None
    assert "no earlier good version" in p.events[0].message
    assert w.status["history"][-1]["result"] == "Failed"
    assert w.status["phase"] == "Degraded"
    assert "targetVersion" not in w.status and "rolloutStartedAt" not in w.status
    assert w.tick(410).events == []  # version 1 is not tried again


def test_a_stalled_rollback_is_reported_once():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(0)
    w.dep = progressed(w.dep, updated=0, available=3, total=3)
    w.tick(301)  # rolling back to 7
    w.dep = progressed(w.dep, updated=0, available=2, total=3)
    p = w.tick(700)
    assert w.reasons(p) == ["RollbackStalled"]
    assert w.condition("Degraded")["reason"] == "RollbackStalled"
    assert w.tick(710).events == []


def test_gate_rejection_is_reported_and_remembered():
    w = World(deployment(7), catalog(manifest(7, 0.30), manifest(8, 0.20)), status=serving(7))
    p = w.tick(0)
    assert p.deployment_patch is None
    assert w.reasons(p) == ["QualityGateRejected"]
    assert w.status["rejectedVersions"] == [8]
    assert w.status["history"][-1]["result"] == "Rejected"
    assert w.condition("Degraded")["reason"] == "QualityGateRejected"
    assert w.status["phase"] == "Degraded"
    assert w.status["currentVersion"] == 7
    again = w.tick(5)
    assert again.events == [] and again.status_patch(w.status) == {}


def test_pinned_rolls_to_the_pinned_version_even_backwards():
    w = World(deployment(9), catalog(manifest(7), manifest(9)), spec=engine_spec("Pinned", 7),
              status=serving(9))
    w.generation = 2
    p = w.tick(0)
    assert w.status["targetVersion"] == 7
    assert p.deployment_patch["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION: "7"}


def test_pinned_missing_version_is_reported_once_and_nothing_rolls():
    w = World(deployment(7), catalog(manifest(7)), spec=engine_spec("Pinned", 12),
              status=serving(7))
    p = w.tick(0)
    assert p.deployment_patch is None
    assert w.reasons(p) == ["PinnedVersionNotFound"]
    assert w.condition("Degraded")["reason"] == "PinnedVersionNotFound"
    assert w.condition("Ready")["status"] == "True"  # version 7 still serves
    assert w.tick(5).events == []
    w.cat = catalog(manifest(7), manifest(12))
    p = w.tick(10)
    assert w.reasons(p) == ["RollingOut", "Recovered"]


def test_a_failed_pinned_version_is_retried_only_after_a_spec_change():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), spec=engine_spec("Pinned", 8),
              status=serving(7))
    w.tick(0)
    w.dep = progressed(w.dep, updated=0, available=3, total=3)
    w.tick(301)  # 8 failed: back to 7
    w.dep = progressed(w.dep)
    w.tick(310)
    p = w.tick(320)
    assert p.deployment_patch is None
    assert w.condition("Degraded")["reason"] == "PinnedVersionFailed"
    w.spec = engine_spec("Pinned", 8, deadline=900)
    w.generation = 2
    p = w.tick(330)
    assert w.status["targetVersion"] == 8 and p.deployment_patch is not None


def test_a_missing_deployment_is_reported_and_nothing_is_patched():
    w = World(None, catalog(manifest(1)))  # type: ignore[arg-type]
    p = w.tick(0)
    assert p.deployment_patch is None
    assert w.condition("Degraded")["reason"] == "DeploymentNotFound"
    assert w.condition("Ready")["reason"] == "DeploymentNotFound"
    assert w.status["phase"] == "Degraded"


def test_an_unreadable_artifact_store_is_reported_while_idle():
    w = World(deployment(7), None, status=serving(7))
    p = w.tick(0, catalog_error="Secret movies-backends does not exist in this namespace")
    assert p.deployment_patch is None
    assert w.condition("Degraded")["reason"] == "ArtifactsUnavailable"
    assert "movies-backends" in w.condition("Degraded")["message"]
    assert w.condition("Ready")["status"] == "True"
    w.cat = catalog(manifest(7))
    assert w.reasons(w.tick(5)) == ["Recovered"]


def test_an_invalid_spec_is_reported():
    w = World(deployment(7), catalog(manifest(7)), spec={"index": {"deployment": "x"}})
    w.tick(0)
    assert w.condition("Degraded")["reason"] == "InvalidSpec"
    assert "secretRef" in w.condition("Degraded")["message"]
    assert w.status["observedGeneration"] == 1


def test_a_template_changed_outside_the_operator_is_restored():
    w = World(deployment(7), catalog(manifest(7)), status=serving(7))
    w.dep = deployment(None)  # e.g. `helm upgrade` reset the env to "latest"
    p = w.tick(0)
    assert w.reasons(p) == ["RollingOut"]
    assert "restoring" in p.events[0].message
    assert p.deployment_patch["spec"]["template"]["metadata"]["annotations"] == {ANNOTATION: "7"}


def test_a_strategy_changed_outside_the_operator_is_fixed_without_a_rollout():
    w = World(deployment(7), catalog(manifest(7)), status=serving(7))
    w.dep = deployment(7, max_unavailable="50%")
    p = w.tick(0)
    assert p.deployment_patch == {"spec": {"strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}}}
    assert "rolloutStartedAt" not in w.status and p.events == []


def test_what_the_pods_already_serve_is_adopted_when_the_status_is_empty():
    w = World(deployment(5), catalog(manifest(5)))
    p = w.tick(0)
    assert w.reasons(p) == ["Adopted"]
    assert w.status["currentVersion"] == w.status["lastGoodVersion"] == 5
    assert w.status["phase"] == "Ready"


def test_conditions_keep_their_transition_time_across_ticks():
    w = World(deployment(7), catalog(manifest(7), manifest(8)), status=serving(7))
    w.tick(10)
    since = w.condition("Progressing")["lastTransitionTime"]
    ready_since = w.condition("Ready")["lastTransitionTime"]
    w.tick(20)
    w.tick(30)
    assert w.condition("Progressing")["lastTransitionTime"] == since
    assert w.condition("Ready")["lastTransitionTime"] == ready_since == "2025-01-01T12:00:00Z"


def test_history_stays_bounded_over_many_rollouts():
    w = World(deployment(1), catalog(manifest(1)), status=serving(1))
    for v in range(2, 40):
        w.cat = catalog(*(manifest(i) for i in range(1, v + 1)))
        w.tick(v * 100)
        w.dep = progressed(w.dep)
        w.tick(v * 100 + 10)
        assert w.status["currentVersion"] == v
    assert len(w.status["history"]) == 20
    assert w.status["history"][-1]["version"] == 39


def test_a_failed_patch_leaves_the_status_and_reports_once():
    w = World(deployment(7), catalog(manifest(7)), status=serving(7))
    p = with_problem(w.status, "DeploymentPatchFailed", "422 invalid", now=T0, generation=1)
    assert p.status["currentVersion"] == 7
    assert [e.reason for e in p.events] == ["DeploymentPatchFailed"]
    w.status = {**w.status, **p.status}
    again = with_problem(w.status, "DeploymentPatchFailed", "422 invalid", now=at(5),
                         generation=1)
    assert again.events == [] and again.status_patch(w.status) == {}


def test_status_stays_put_while_a_rollout_makes_progress():
    w = World(deployment(None), catalog(manifest(1)))
    w.tick(0)
    w.dep = progressed(w.dep, updated=1, available=0, total=3)
    w.tick(10)
    before = dict(w.status)
    w.dep = progressed(w.dep, updated=2, available=1, total=3)
    p = w.tick(20)
    assert p.status_patch(before) == {} and p.deployment_patch is None and p.events == []
