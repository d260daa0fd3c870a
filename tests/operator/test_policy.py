"""Choosing the version to serve: Latest with its quality gate, and Pinned."""

from __future__ import annotations

import pytest
from support.kube_objects import catalog, engine_spec, manifest

from recengine_operator.policy import choose_version, gate_verdict, quality_summary
from recengine_operator.spec import QualityGate, parse_spec


def choose(spec, cat, **kw):
    return choose_version(parse_spec(spec), cat.versions, cat.manifest, **kw)


def test_latest_picks_the_newest_version_that_passes_the_gate():
    cat = catalog(manifest(7, 0.30), manifest(8, 0.31), manifest(9, 0.29))
    decision = choose(engine_spec(), cat, current=7)
    assert decision.target == 9
    assert decision.rejected == ()
    assert decision.problem is None


def test_latest_falls_back_to_an_older_new_version_when_the_newest_fails_the_gate():
    cat = catalog(manifest(7, 0.30), manifest(8, 0.31), manifest(9, 0.20))
    decision = choose(engine_spec(), cat, current=7)
    assert decision.target == 8
    assert [r.version for r in decision.rejected] == [9]


def test_gate_rejects_a_version_whose_recall_drops_more_than_max_drop():
    cat = catalog(manifest(7, 0.30), manifest(8, 0.24))
    decision = choose(engine_spec(max_drop=0.05), cat, current=7)
    assert decision.target is None
    (rejection,) = decision.rejected
    assert rejection.version == 8
    assert "recall_at_10" in rejection.reason and "20.0% below 0.3000" in rejection.reason
    assert "maxDrop 0.05" in rejection.reason


def test_gate_drop_is_relative_to_the_current_versions_metric():
    cat = catalog(manifest(7, 0.20), manifest(8, 0.191), manifest(9, 0.189))
    assert choose(engine_spec(max_drop=0.05), cat, current=7, rejected=[9]).target == 8  # 4.5%
    decision = choose(engine_spec(max_drop=0.05), cat, current=7, rejected=[8])  # 5.5%
    assert decision.target is None and decision.rejected[0].version == 9


def test_gate_accepts_a_drop_within_max_drop():
    cat = catalog(manifest(7, 0.30), manifest(8, 0.29))
    assert choose(engine_spec(max_drop=0.05), cat, current=7).target == 8


def test_gate_may_compare_another_metric_of_the_manifest():
    cat = catalog(manifest(7, 0.30, recall_at_20=0.5), manifest(8, 0.10, recall_at_20=0.49))
    spec = engine_spec()
    spec["embedding"]["qualityGate"]["metric"] = "recall_at_20"
    assert choose(spec, cat, current=7).target == 8


def test_gate_rejects_a_version_evaluated_on_fewer_than_min_evaluated_events():
    cat = catalog(manifest(7, 0.30), manifest(8, 0.40, evaluated=999))
    decision = choose(engine_spec(min_evaluated=1000), cat, current=7)
    assert decision.target is None
    assert "999" in decision.rejected[0].reason
    assert "minEvaluated 1000" in decision.rejected[0].reason


def test_gate_rejects_a_version_without_the_metric():
    why = gate_verdict(manifest(8, recall=None), manifest(7), QualityGate(), version=8,
                       current=7)
    assert why == "version 8 reports no recall_at_10 in its manifest"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), True, "0.4"])
def test_gate_rejects_a_metric_that_is_not_a_finite_number(value: object):
    candidate = manifest(8)
    candidate["quality"]["recall_at_10"] = value
    why = gate_verdict(candidate, manifest(7), QualityGate(), version=8, current=7)
    assert why == "version 8 reports no recall_at_10 in its manifest"


def test_gate_ignores_a_baseline_whose_metric_is_not_finite():
    why = gate_verdict(manifest(8, 0.01), manifest(7, float("nan")), QualityGate(), version=8,
                       current=7)
    assert why is None


def test_gate_without_a_current_version_checks_only_min_evaluated():
    cat = catalog(manifest(1, 0.01, evaluated=2000), manifest(2, 0.02, evaluated=10))
    decision = choose(engine_spec(), cat, current=None)
    assert decision.target == 1
    assert [r.version for r in decision.rejected] == [2]


def test_gate_without_a_readable_baseline_manifest_checks_only_min_evaluated():
    cat = catalog(manifest(8, 0.01))  # version 7, served now, was pruned from the store
    assert choose(engine_spec(), cat, current=7).target == 8


def test_latest_never_judges_a_rejected_or_failed_version_again():
    cat = catalog(manifest(7), manifest(8), manifest(9))
    decision = choose(engine_spec(), cat, current=7, failed=[9], rejected=[8])
    assert decision.target is None
    assert decision.rejected == ()
    assert "failed before" in decision.reason


def test_latest_tries_a_newer_version_after_a_failed_one():
    cat = catalog(manifest(7), manifest(8), manifest(9))
    assert choose(engine_spec(), cat, current=7, failed=[8]).target == 9


def test_latest_never_goes_back_to_an_older_version():
    cat = catalog(manifest(5, 0.9), manifest(6, 0.9), manifest(7, 0.3))
    decision = choose(engine_spec(), cat, current=7)
    assert decision.target is None
    assert "newest" in decision.reason


def test_latest_with_nothing_published_waits():
    decision = choose(engine_spec(), catalog(), current=None)
    assert decision.target is None
    assert decision.problem is None
    assert "no embedding version" in decision.reason


def test_pinned_picks_the_pinned_version_without_a_gate():
    cat = catalog(manifest(3, 0.01, evaluated=0), manifest(7, 0.30), manifest(9, 0.31))
    decision = choose(engine_spec("Pinned", 3), cat, current=7)
    assert decision.target == 3
    assert decision.problem is None


def test_pinned_reports_a_missing_version():
    cat = catalog(manifest(7), manifest(8))
    decision = choose(engine_spec("Pinned", 12), cat, current=7)
    assert decision.target is None
    assert decision.problem is not None
    reason, message = decision.problem
    assert reason == "PinnedVersionNotFound"
    assert "12" in message and "published: 8, 7" in message


def test_pinned_does_not_retry_a_version_that_failed():
    cat = catalog(manifest(7), manifest(8))
    decision = choose(engine_spec("Pinned", 8), cat, current=7, failed=[8])
    assert decision.target is None
    assert decision.reason == "pinned version 8 failed to roll out"
    assert decision.problem is not None
    reason, message = decision.problem
    assert reason == "PinnedVersionFailed"
    assert message.startswith("pinned embedding version 8 failed to roll out;")


def test_the_decision_reports_the_metric_beside_both_popularity_baselines() -> None:
    manifest = {"quality": {"recall_at_10": 0.12, "plain_popularity_recall_at_10": 0.05,
                            "decayed_popularity_recall_at_10": 0.06, "evaluated": 5000}}
    assert quality_summary(manifest, "recall_at_10") == (
        "recall_at_10 0.1200 (plain popularity 0.0500, decayed 0.0600: 2.00x the stronger)")
    assert quality_summary({"quality": {"recall_at_10": 0.1}}, "recall_at_10") == (
        "recall_at_10 0.1000")
    assert quality_summary({}, "recall_at_10") == "no recall_at_10"
