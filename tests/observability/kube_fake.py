"""An in-memory stand-in for the operator's Kube (no cluster, no HTTP), for driving the real
reconcile handler in tests: RecEngines, their Secrets and index Deployments as plain dicts."""

from __future__ import annotations

import copy
from typing import Any

from recengine_operator.rollout import ANNOTATION, ENV_VAR

Key = tuple[str, str]


class FakeKube:
    def __init__(self) -> None:
        self.recengines: dict[Key, dict[str, Any]] = {}
        self.deployments: dict[Key, dict[str, Any]] = {}
        self.secrets: dict[Key, dict[str, str]] = {}

    # --- the calls of recengine_operator.kube.Kube --------------------------------------------
    def get_recengine(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.recengines.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def patch_recengine_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        obj = self.recengines.get((namespace, name))
        if obj is None:
            return False
        status = obj.setdefault("status", {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        return True

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        dep = self.deployments.get((namespace, name))
        return copy.deepcopy(dep) if dep is not None else None

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """The strategic merge of the operator's patches (strategy; template annotation and
        the index container's env, merged by name); bumps the generation like the API."""
        dep = self.deployments.get((namespace, name))
        if dep is None:
            return False
        spec = patch.get("spec", {})
        if "strategy" in spec:
            old = dep["spec"].get("strategy", {})
            dep["spec"]["strategy"] = {**old, **spec["strategy"], "rollingUpdate": {
                **old.get("rollingUpdate", {}), **spec["strategy"].get("rollingUpdate", {})}}
        if "template" in spec:
            tmpl = dep["spec"]["template"]
            tmpl["metadata"].setdefault("annotations", {}).update(
                spec["template"]["metadata"]["annotations"])
            for pc in spec["template"]["spec"]["containers"]:
                c = next(c for c in tmpl["spec"]["containers"] if c["name"] == pc["name"])
                env = {e["name"]: e for e in c.get("env", [])}
                env.update({e["name"]: e for e in pc.get("env", [])})
                c["env"] = list(env.values())
        dep["metadata"]["generation"] += 1
        return True

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return dict(self.secrets[namespace, name]) if (namespace, name) in self.secrets else None

    # --- setting up a world --------------------------------------------------------------------
    def add_engine(self, namespace: str, name: str, artifacts_url: str, *,
                   serving: int | None = None, deadline_s: int = 60,
                   min_evaluated: int = 0) -> None:
        self.secrets[namespace, f"{name}-backends"] = {"RECENGINE_ARTIFACTS_URL": artifacts_url}
        self.recengines[namespace, name] = {
            "apiVersion": "recengine.io/v1alpha1", "kind": "RecEngine",
            "metadata": {"name": name, "namespace": namespace, "generation": 1,
                         "uid": f"uid-{name}"},
            "spec": {"artifacts": {"secretRef": f"{name}-backends"},
                     "index": {"deployment": f"{name}-index",
                               "progressDeadlineSeconds": deadline_s},
                     "embedding": {"policy": "Latest",
                                   "qualityGate": {"metric": "recall_at_10", "maxDrop": 1.0,
                                                   "minEvaluated": min_evaluated}}}}
        env = [] if serving is None else [{"name": ENV_VAR, "value": str(serving)}]
        annotations = {} if serving is None else {ANNOTATION: str(serving)}
        self.deployments[namespace, f"{name}-index"] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{name}-index", "namespace": namespace, "generation": 1},
            "spec": {"replicas": 2,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": {"annotations": annotations},
                                  "spec": {"containers": [{"name": "index", "env": env}]}}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2}}

    def roll_out(self, namespace: str, name: str) -> None:
        """The Deployment controller finished: every pod runs the newest template."""
        dep = self.deployments[namespace, f"{name}-index"]
        n = dep["spec"]["replicas"]
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n,
                         "updatedReplicas": n, "availableReplicas": n}
