"""Reading a RecEngine spec: defaults and readable errors."""

from __future__ import annotations

import pytest
from support.kube_objects import engine_spec

from recengine_operator.spec import InvalidSpec, QualityGate, parse_spec


def test_defaults_fill_what_the_spec_leaves_out():
    spec = parse_spec({"artifacts": {"secretRef": "s"}, "index": {"deployment": "d"}})
    assert spec.policy == "Latest" and spec.pinned_version is None
    assert spec.progress_deadline_s == 300
    assert spec.gate == QualityGate("recall_at_10", 0.05, 1000)


def test_a_full_spec_is_read_as_written():
    spec = parse_spec(engine_spec("Pinned", 12, deadline=60, max_drop=0.1, min_evaluated=5))
    assert (spec.secret_ref, spec.deployment) == ("movies-backends", "movies-index")
    assert (spec.policy, spec.pinned_version, spec.progress_deadline_s) == ("Pinned", 12, 60)
    assert spec.gate == QualityGate("recall_at_10", 0.1, 5)


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s["artifacts"].pop("secretRef"), "secretRef"),
    (lambda s: s["index"].pop("deployment"), "deployment"),
    (lambda s: s["index"].update(progressDeadlineSeconds=0), "progressDeadlineSeconds"),
    (lambda s: s["embedding"].update(policy="Newest"), "policy"),
    (lambda s: s["embedding"].update(policy="Pinned"), "version"),
    (lambda s: s["embedding"]["qualityGate"].update(metric=""), "metric"),
    (lambda s: s["embedding"]["qualityGate"].update(maxDrop=-1), "maxDrop"),
    (lambda s: s["embedding"]["qualityGate"].update(maxDrop=1.5), "maxDrop"),
    (lambda s: s["embedding"]["qualityGate"].update(minEvaluated=True), "minEvaluated"),
    (lambda s: s.update(index="movies-index"), "spec.index"),
])
def test_an_invalid_spec_names_the_field(change, field):
    spec = engine_spec()
    change(spec)
    with pytest.raises(InvalidSpec, match=field):
        parse_spec(spec)
