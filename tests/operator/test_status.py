"""Conditions, history, memory, phase and the status patch."""

from __future__ import annotations

from support.kube_objects import T0, at

from recengine_operator import status as st


def test_condition_keeps_its_transition_time_while_its_status_stays():
    conds = st.set_condition([], st.READY, True, "Serving", "serving version 7", T0)
    conds = st.set_condition(conds, st.READY, True, "Serving", "serving version 8", at(60))
    (ready,) = conds
    assert ready["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert ready["message"] == "serving version 8"


def test_condition_transition_time_changes_when_its_status_flips():
    conds = st.set_condition([], st.DEGRADED, False, "Healthy", "", T0)
    conds = st.set_condition(conds, st.DEGRADED, True, "RolledBack", "8 failed", at(90))
    assert conds[0]["lastTransitionTime"] == "2025-01-01T12:01:30Z"
    assert conds[0]["status"] == "True" and conds[0]["reason"] == "RolledBack"


def test_conditions_are_kept_in_a_stable_order_with_foreign_ones_last():
    conds = [{"type": "Custom", "status": "True"}]
    for ctype in (st.DEGRADED, st.READY, st.PROGRESSING):
        conds = st.set_condition(conds, ctype, False, "X", "", T0)
    assert [c["type"] for c in conds] == ["Ready", "Progressing", "Degraded", "Custom"]


def test_history_is_bounded_to_the_newest_entries():
    history = []
    for v in range(1, 26):
        history = st.add_history(history, version=v, result=st.SUCCEEDED, started_at=None,
                                 finished_at=st.format_time(at(v)), reason="ok", limit=20)
    assert len(history) == 20
    assert [h["version"] for h in history] == list(range(6, 26))
    assert history[-1] == {"version": 25, "result": "Succeeded",
                           "startedAt": "2025-01-01T12:00:25Z",
                           "finishedAt": "2025-01-01T12:00:25Z", "reason": "ok"}


def test_remembered_versions_are_sorted_unique_and_bounded():
    versions = []
    for v in [5, 3, 5, *range(10, 70)]:
        versions = st.remember(versions, v, limit=50)
    assert len(versions) == 50 and versions == sorted(set(versions)) and versions[-1] == 69


def test_times_round_trip():
    assert st.parse_time(st.format_time(at(42))) == at(42)
    assert st.parse_time("garbage") is None
    assert st.parse_time(None) is None


def test_phase():
    assert st.phase(current=None, rolling_out=False, rolling_back=False, problem=False,
                    failed=False) == "Pending"
    assert st.phase(current=7, rolling_out=False, rolling_back=False, problem=False,
                    failed=False) == "Ready"
    assert st.phase(current=7, rolling_out=True, rolling_back=False, problem=False,
                    failed=True) == "Progressing"
    assert st.phase(current=7, rolling_out=True, rolling_back=True, problem=False,
                    failed=True) == "Degraded"
    assert st.phase(current=7, rolling_out=False, rolling_back=False, problem=False,
                    failed=True) == "Degraded"
    assert st.phase(current=7, rolling_out=True, rolling_back=False, problem=True,
                    failed=False) == "Degraded"


def test_status_patch_holds_only_what_changed_and_deletes_with_none():
    old = {"currentVersion": 7, "targetVersion": 8, "rolloutStartedAt": "x", "foreign": 1}
    new = {"currentVersion": 8, "targetVersion": 8, "rolloutStartedAt": None}
    assert st.status_patch(old, new) == {"currentVersion": 8, "rolloutStartedAt": None}
    assert st.status_patch(new, new) == {}
