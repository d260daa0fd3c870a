"""The chart and the operator on a real API server (etcd + kube-apiserver + controller-manager +
scheduler, kwok playing the kubelet): install, roll versions, roll back, pin, gate, restart."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.k8s import ROOT, ControlPlane
from support.waiting import wait_until

from recengine.backends.files import FileArtifactStore
from recengine.versions import build_blobs

pytestmark = pytest.mark.k8s

#: kwok keeps pods of this embedding version unready forever: a rollout that never finishes.
BROKEN = "13"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ControlPlane]:
    cp = ControlPlane(unready_versions=(BROKEN,))
    try:
        cp.start()
        yield cp
    finally:
        cp.cleanup()


def publish(store: FileArtifactStore, recall: float, evaluated: int = 5000) -> int:
    rng = np.random.default_rng(len(store.versions()))
    n = 20
    blobs, manifest = build_blobs(
        item_ids=[f"i{k}" for k in range(n)], vectors=rng.normal(size=(n, 5)).astype(np.float32),
        output_weights=np.ones(4, np.float32), neighbour_ids=np.zeros((n, 2), np.int32),
        neighbour_weights=np.zeros((n, 2), np.float32), popular={"": []}, items_meta={},
        quality={"recall_at_10": recall, "popularity_recall_at_10": 0.05,
                 "evaluated": evaluated})
    return store.publish(blobs, manifest)


def index_deployment(ns: str, name: str = "movies-index", replicas: int = 2) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "index",
                                                       "image": "recengine-index:test"}]}}}})


def recengine(ns: str, artifacts: Path, deadline_s: int = 20, **embedding: object) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "movies-backends",
                                                            "namespace": ns},
         "stringData": {"RECENGINE_ARTIFACTS_URL": f"file://{artifacts}",
                        "RECENGINE_NAME": "movies"}},
        {"apiVersion": "recengine.io/v1alpha1", "kind": "RecEngine",
         "metadata": {"name": "movies", "namespace": ns},
         "spec": {"artifacts": {"secretRef": "movies-backends"},
                  "index": {"deployment": "movies-index",
                            "progressDeadlineSeconds": deadline_s},
                  "embedding": {"policy": "Latest",
                                "qualityGate": {"metric": "recall_at_10", "maxDrop": 0.05,
                                                "minEvaluated": 1000},
                                **embedding}}}]})


class Operator:
    """``kopf run -m recengine_operator`` as a real process against the cluster."""

    def __init__(self, cluster: ControlPlane, ns: str, log: Path) -> None:
        self.cluster, self.ns, self.log = cluster, ns, log
        self.proc: subprocess.Popen | None = None

    def start(self, *mode: str) -> Operator:
        env = {**self.cluster.env(), "RECENGINE_OPERATOR_INTERVAL_S": "1",
               "RECENGINE_OPERATOR_IDLE_S": "0"}
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-m", "recengine_operator",
             *(mode or ("--standalone",)), "--namespace", self.ns], env=env, stdout=out,
            stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def status(cluster: ControlPlane, ns: str) -> dict:
    out = cluster.kubectl("get", "recengine", "movies", "-n", ns, "-o", "json")
    return json.loads(out).get("status", {})


def template_version(cluster: ControlPlane, ns: str) -> str:
    return cluster.kubectl("get", "deployment", "movies-index", "-n", ns, "-o",
                           "jsonpath={.spec.template.metadata.annotations.recengine\\.io/"
                           "embedding-version}")


@pytest.fixture
def engine(cluster: ControlPlane, tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster.kubectl("apply", "-f", str(ROOT / "charts/recengine/crds"))
    ns = cluster.namespace()
    cluster.kubectl("apply", "-f", "-", stdin=index_deployment(ns))
    store = FileArtifactStore(tmp_path / "artifacts")
    op = Operator(cluster, ns, tmp_path / "operator.log").start()
    yield ns, store, op
    op.stop()
    if Path(tmp_path / "operator.log").exists():
        print(Path(tmp_path / "operator.log").read_text()[-5000:])


def test_publishing_versions_rolls_the_index_deployment(cluster, engine) -> None:
    ns, store, _ = engine
    publish(store, 0.20)
    cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 1, "version 1")
    publish(store, 0.21)
    st = wait_until(lambda: (s := status(cluster, ns)).get("currentVersion") == 2 and s,
                  "version 2")
    assert template_version(cluster, ns) == "2"
    assert st["phase"] == "Ready" and st["lastGoodVersion"] == 2
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Ready"] == "True" and conds["Progressing"] == "False"
    assert st["observedGeneration"] >= 1
    row = cluster.kubectl("get", "recengines", "-n", ns)
    assert "Latest" in row and "Ready" in row and " 2 " in f" {row} "
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.kind=RecEngine", "-o", "json")
    assert json.loads(events)["items"], "the operator reports rollout steps as events"


def test_a_version_whose_pods_never_become_ready_is_rolled_back(cluster, engine) -> None:
    ns, store, _ = engine
    for recall in [0.2] * (int(BROKEN) - 1):
        publish(store, recall)
    cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root, deadline_s=15))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == int(BROKEN) - 1,
             "the last good version")
    assert publish(store, 0.21) == int(BROKEN)
    st = wait_until(lambda: (s := status(cluster, ns)).get("phase") == "Degraded" and s,
                  "Degraded", 120)
    assert st["currentVersion"] == int(BROKEN) - 1
    assert template_version(cluster, ns) == str(int(BROKEN) - 1)
    assert any(h["version"] == int(BROKEN) and h["result"] == "RolledBack"
               for h in st["history"])


def test_pinned_policy_and_the_quality_gate(cluster, engine) -> None:
    ns, store, _ = engine
    publish(store, 0.20)
    publish(store, 0.21)
    cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root, policy="Pinned",
                                                       version=1))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 1, "pinned version 1")
    cluster.kubectl("patch", "recengine", "movies", "-n", ns, "--type=merge", "-p",
                    json.dumps({"spec": {"embedding": {"policy": "Latest", "version": None}}}))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 2, "latest version 2")
    publish(store, 0.10)  # recall halves: fails the gate
    time.sleep(8)
    st = status(cluster, ns)
    assert st["currentVersion"] == 2 and template_version(cluster, ns) == "2"
    assert any(h["version"] == 3 and h["result"] == "Rejected" for h in st["history"])


def test_an_operator_killed_mid_rollout_finishes_it_after_restart(cluster, engine) -> None:
    ns, store, op = engine
    publish(store, 0.2)
    cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 1, "version 1")
    cluster.kubectl("scale", "deployment", "movies-index", "-n", ns, "--replicas=6")
    publish(store, 0.21)
    wait_until(lambda: status(cluster, ns).get("targetVersion") == 2, "rollout started")
    op.kill()
    op.start()
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 2, "rollout finished", 120)


def test_deleting_the_recengine_leaves_nothing_it_created(cluster, engine) -> None:
    ns, store, _ = engine
    publish(store, 0.2)
    cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root))
    wait_until(lambda: status(cluster, ns).get("currentVersion") == 1, "version 1")
    before = set(cluster.kubectl("get", "all", "-n", ns, "-o", "name").split())
    cluster.kubectl("delete", "recengine", "movies", "-n", ns, "--timeout=60s")
    assert cluster.kubectl("get", "recengines", "-n", ns, "-o", "name").strip() == ""
    after = set(cluster.kubectl("get", "all", "-n", ns, "-o", "name").split())
    assert after <= before  # nothing new; the Deployment belongs to the chart and stays
    assert "deployment.apps/movies-index" in after


@pytest.mark.parametrize("scenario", ["default", "production", "recengine"])
def test_helm_install_creates_valid_objects_on_the_api_server(cluster, scenario) -> None:
    """Every object of the chart is accepted by a real API server (schemas, CRDs, RBAC) and
    kwok runs its pods; helm uninstall removes them again."""
    ns = cluster.namespace()
    cluster.kubectl("apply", "-f", str(ROOT / "charts/recengine/crds"))
    if scenario == "production":
        cluster.kubectl("create", "secret", "generic", "movies-backends", "-n", ns,
                        "--from-literal=RECENGINE_ARTIFACTS_URL=mongodb://mongo:27017/r")
    values = ROOT / f"charts/recengine/ci/{scenario}-values.yaml"
    # The test cluster has no storage provisioner: a PersistentVolumeClaim would stay Pending.
    cluster.helm("install", "rec", str(ROOT / "charts/recengine"), "-n", ns, "-f",
                 str(values), "--set", "persistence.enabled=false", "--skip-crds",
                 "--timeout", "120s")
    manifest = cluster.helm("get", "manifest", "rec", "-n", ns).stdout
    kinds = [doc.split("kind: ", 1)[1].split("\n", 1)[0].strip()
             for doc in manifest.split("\n---") if "\nkind: " in f"\n{doc}"]
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding"} <= set(kinds)
    names = cluster.kubectl("get", "deployments", "-n", ns, "-o", "name").split()
    assert len(names) >= 4  # trainer, index, api, operator (+ graphite/grafana when enabled)

    def all_available() -> bool:
        out = json.loads(cluster.kubectl("get", "deployments", "-n", ns, "-o", "json"))
        return all(d.get("status", {}).get("availableReplicas", 0)
                   == d["spec"].get("replicas", 1) for d in out["items"])

    wait_until(all_available, "every Deployment available (kwok runs the pods)", 120)
    if scenario == "recengine":
        assert cluster.kubectl("get", "recengines", "-n", ns, "-o", "name").strip()
    cluster.helm("uninstall", "rec", "-n", ns, "--wait", "--timeout", "120s")
    left = cluster.kubectl("get", "deployments,services,configmaps,secrets,roles", "-n", ns,
                           "-l", "app.kubernetes.io/instance=rec", "-o", "name")
    assert left.strip() == ""


def test_two_peered_operators_never_act_at_once(cluster, tmp_path) -> None:
    """kopf peering: of two replicas only the one with the higher priority acts; when it dies
    the other takes over."""
    cluster.kubectl("apply", "-f", str(ROOT / "charts/recengine/crds"))
    ns = cluster.namespace()
    cluster.kubectl("apply", "-f", "-", stdin=index_deployment(ns))
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "recengine"}}))
    store = FileArtifactStore(tmp_path / "artifacts")
    high = Operator(cluster, ns, tmp_path / "high.log").start("--peering", "recengine",
                                                               "--priority", "100")
    low = Operator(cluster, ns, tmp_path / "low.log").start("--peering", "recengine",
                                                             "--priority", "10")
    try:
        publish(store, 0.2)
        cluster.kubectl("apply", "-f", "-", stdin=recengine(ns, store.root))
        wait_until(lambda: status(cluster, ns).get("currentVersion") == 1, "version 1", 120)
        publish(store, 0.21)
        wait_until(lambda: status(cluster, ns).get("currentVersion") == 2, "version 2", 120)
        events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json"))["items"]
        started = [e for e in events if e["involvedObject"]["kind"] == "RecEngine"
                   and re.search(r"\bversion 2\b", e.get("message", ""))
                   and e.get("reason") == "RollingOut"]
        assert sum(e.get("count", 1) for e in started) == 1, started
        high.kill()  # the acting replica dies: the other one takes over
        publish(store, 0.22)
        wait_until(lambda: status(cluster, ns).get("currentVersion") == 3, "version 3", 180)
    finally:
        high.stop()
        low.stop()
