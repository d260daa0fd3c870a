"""Following a Deployment's rollout, and the patch that rolls it."""

from __future__ import annotations

from support.kube_objects import T0, applied, at, deployment, progressed

from recengine_operator.rollout import ANNOTATION, ENV_VAR, Outcome, assess, observe, template_patch


def test_observe_reads_the_version_the_template_carries():
    state = observe(deployment(7))
    assert state.template_version == 7
    assert state.env_version == "7"
    assert state.serves(7) and not state.serves(8)
    assert state.has_container
    assert state.complete


def test_observe_a_template_the_operator_never_touched():
    state = observe(deployment(None))
    assert state.template_version is None
    assert not state.serves(1)


def test_observe_ignores_a_garbled_annotation():
    dep = deployment(7)
    dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION] = "seven"
    assert observe(dep).template_version is None


def test_rollout_is_in_progress_while_pods_are_updating():
    dep = progressed(applied(deployment(7), template_patch(observe(deployment(7)), 8)),
                     updated=1, available=3, total=4)
    progress = assess(observe(dep), 8, T0, at(60), 300)
    assert progress.outcome is Outcome.IN_PROGRESS
    assert "1/3 updated" in progress.message


def test_rollout_is_not_done_before_the_controller_sees_the_new_template():
    dep = applied(deployment(7), template_patch(observe(deployment(7)), 8))
    # The status still describes the old generation: every pod is "updated" and available.
    assert assess(observe(dep), 8, T0, at(1), 300).outcome is Outcome.IN_PROGRESS


def test_rollout_is_not_done_while_old_pods_remain():
    dep = progressed(deployment(8), updated=3, available=3, total=4)
    assert assess(observe(dep), 8, T0, at(10), 300).outcome is Outcome.IN_PROGRESS


def test_rollout_succeeds_when_every_pod_is_updated_and_available():
    dep = progressed(applied(deployment(7), template_patch(observe(deployment(7)), 8)))
    assert assess(observe(dep), 8, T0, at(30), 300).outcome is Outcome.SUCCEEDED


def test_rollout_fails_when_pods_never_become_ready_within_the_deadline():
    dep = progressed(deployment(8), updated=1, available=3, total=4)
    progress = assess(observe(dep), 8, T0, at(301), 300)
    assert progress.outcome is Outcome.FAILED
    assert "not ready after 301 s" in progress.message
    assert "0/3" not in progress.message and "1/3 updated" in progress.message


def test_rollout_failure_names_the_deployments_replica_failure():
    dep = progressed(deployment(8), updated=0, available=3, total=3)
    dep["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True",
                                    "message": 'pods "x" is forbidden: exceeded quota'}]
    assert "exceeded quota" in assess(observe(dep), 8, T0, at(400), 300).message


def test_rollout_of_a_template_without_the_version_is_not_applied():
    progress = assess(observe(deployment(7)), 8, T0, at(1), 300)
    assert progress.outcome is Outcome.NOT_APPLIED


def test_patch_sets_annotation_env_and_zero_unavailable():
    patch = template_patch(observe(deployment(7, max_unavailable="25%")), 8)
    assert patch == {"spec": {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
        "template": {
            "metadata": {"annotations": {ANNOTATION: "8"}},
            "spec": {"containers": [{"name": "index",
                                     "env": [{"name": ENV_VAR, "value": "8"}]}]},
        },
    }}


def test_patch_adds_surge_when_the_strategy_allows_none():
    patch = template_patch(observe(deployment(7, max_unavailable=1, max_surge="0%")), 8)
    assert patch["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_patch_turns_recreate_into_a_rolling_update_with_zero_unavailable():
    patch = template_patch(observe(deployment(7, strategy="Recreate")), 8)
    assert patch["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_patch_leaves_a_zero_unavailable_strategy_alone():
    patch = template_patch(observe(deployment(7, max_unavailable="0%")), 8)
    assert "strategy" not in patch["spec"]


def test_patch_names_the_configured_container():
    dep = deployment(7, container="faiss")
    patch = template_patch(observe(dep, container="faiss"), 8, container="faiss")
    assert patch["spec"]["template"]["spec"]["containers"][0]["name"] == "faiss"


def test_no_patch_when_the_deployment_already_serves_the_version():
    assert template_patch(observe(deployment(8)), 8) is None


def test_patch_is_the_same_for_the_same_observed_state():
    dep = deployment(7, max_unavailable=1)
    assert template_patch(observe(dep), 8) == template_patch(observe(dep), 8)


def test_patch_keeps_other_containers_and_env_vars():
    dep = applied(deployment(7), template_patch(observe(deployment(7)), 8))
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["index", "sidecar"]
    env = {e["name"]: e["value"] for e in containers[0]["env"]}
    assert env == {"RECENGINE_ARTIFACTS_URL": "file:///data/artifacts", ENV_VAR: "8"}
