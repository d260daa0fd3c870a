"""The CRD and the manifests in operator/deploy agree with the code: names, defaults, status."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recengine_operator import spec as sp
from recengine_operator import status as st

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "operator" / "deploy"
#: The one CRD: the chart installs it; operator/deploy holds only RBAC, peering and an example.
CRD = ROOT / "charts" / "recengine" / "crds" / "recengine.io_recengines.yaml"


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD.read_text())


def schema(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]


def test_crd_names_what_the_operator_watches(crd):
    assert crd["metadata"]["name"] == f"{sp.PLURAL}.{sp.GROUP}"
    assert crd["spec"]["group"] == sp.GROUP
    assert crd["spec"]["names"]["kind"] == sp.KIND
    assert crd["spec"]["names"]["plural"] == sp.PLURAL
    (version,) = crd["spec"]["versions"]
    assert version["name"] == sp.VERSION
    assert version["subresources"] == {"status": {}}


def test_crd_status_schema_keeps_every_field_the_operator_writes(crd):
    status = schema(crd)["status"]["properties"]
    assert set(status) == set(st.OWNED_KEYS)
    results = status["history"]["items"]["properties"]["result"]["enum"]
    assert set(results) == {st.SUCCEEDED, st.ROLLED_BACK, st.REJECTED, st.FAILED}
    assert set(status["phase"]["enum"]) == {st.PENDING, st.PHASE_PROGRESSING, st.PHASE_READY,
                                           st.PHASE_DEGRADED}


def test_crd_defaults_are_the_operators_defaults(crd):
    spec = schema(crd)["spec"]["properties"]
    assert spec["index"]["properties"]["progressDeadlineSeconds"]["default"] == \
        sp.DEFAULT_PROGRESS_DEADLINE_S
    embedding = spec["embedding"]["properties"]
    assert embedding["policy"]["default"] == sp.LATEST
    assert embedding["policy"]["enum"] == list(sp.POLICIES)
    gate = embedding["qualityGate"]["properties"]
    defaults = sp.QualityGate()
    assert gate["metric"]["default"] == defaults.metric
    assert gate["maxDrop"]["maximum"] == 1
    assert gate["maxDrop"]["default"] == defaults.max_drop
    assert gate["minEvaluated"]["default"] == defaults.min_evaluated


def test_kubectl_get_shows_policy_versions_phase_and_age(crd):
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Policy"] == ".spec.embedding.policy"
    assert columns["Current"] == ".status.currentVersion"
    assert columns["Target"] == ".status.targetVersion"
    assert columns["Phase"] == ".status.phase"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_rbac_grants_what_the_operator_calls_and_nothing_that_creates_or_deletes():
    docs = list(yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    grants = {(g, r): set(rule["verbs"]) for rule in role["rules"]
              for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"get", "patch"} <= grants[("apps", "deployments")]
    assert {"get", "list", "watch", "patch"} <= grants[("recengine.io", "recengines")]
    assert "patch" in grants[("recengine.io", "recengines/status")]
    assert "get" in grants[("", "secrets")]
    assert "create" in grants[("", "events")]
    for (_, resource), verbs in grants.items():
        assert "delete" not in verbs
        assert resource == "events" or "create" not in verbs


def test_the_charts_crd_keeps_every_status_field_and_default_of_the_operator():
    chart = yaml.safe_load(CRD.read_text())
    status = schema(chart)["status"]
    if not status.get("x-kubernetes-preserve-unknown-fields"):
        assert set(st.OWNED_KEYS) <= set(status["properties"])  # else the API server prunes
    gate = schema(chart)["spec"]["properties"]["embedding"]["properties"]["qualityGate"]
    defaults = sp.QualityGate()
    assert gate["properties"]["maxDrop"]["default"] == defaults.max_drop
    assert gate["properties"]["minEvaluated"]["default"] == defaults.min_evaluated
    assert gate["properties"]["metric"]["default"] == defaults.metric
