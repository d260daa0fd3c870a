"""Plain-dict Kubernetes objects and manifests for the operator's tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from recengine_operator.reconcile import Catalog
from recengine_operator.rollout import ANNOTATION, ENV_VAR

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def deployment(version: int | None = None, *, replicas: int = 3, generation: int = 1,
               observed: int | None = None, updated: int | None = None,
               available: int | None = None, total: int | None = None,
               max_unavailable: Any = 0, max_surge: Any = 1,
               strategy: str = "RollingUpdate", container: str = "index") -> dict[str, Any]:
    """An index Deployment whose template serves ``version``; by default its rollout is done."""
    env = [{"name": "RECENGINE_ARTIFACTS_URL", "value": "file:///data/artifacts"}]
    annotations = {"prometheus.io/scrape": "true"}
    if version is not None:
        env.append({"name": ENV_VAR, "value": str(version)})
        annotations[ANNOTATION] = str(version)
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxUnavailable": max_unavailable, "maxSurge": max_surge}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "movies-index", "namespace": "recs", "generation": generation},
        "spec": {
            "replicas": replicas,
            "strategy": strat,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [
                    {"name": container, "image": "recengine:dev", "env": env},
                    {"name": "sidecar", "image": "statsd-exporter"},
                ]},
            },
        },
        "status": {
            "observedGeneration": generation if observed is None else observed,
            "replicas": replicas if total is None else total,
            "updatedReplicas": replicas if updated is None else updated,
            "availableReplicas": replicas if available is None else available,
        },
    }


def applied(dep: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """``dep`` after a strategic merge patch built by rollout.template_patch, as the API server
    would apply it (generation bumped when the spec changes; the controller has not seen it)."""
    if not patch:
        return dep
    new = copy.deepcopy(dep)
    spec = patch["spec"]
    if "strategy" in spec:
        new["spec"]["strategy"] = {**new["spec"].get("strategy", {}), **spec["strategy"]}
        new["spec"]["strategy"]["rollingUpdate"] = {
            **dep["spec"].get("strategy", {}).get("rollingUpdate", {}),
            **spec["strategy"]["rollingUpdate"]}
    if "template" in spec:
        tmpl = new["spec"]["template"]
        tmpl["metadata"]["annotations"].update(spec["template"]["metadata"]["annotations"])
        for pc in spec["template"]["spec"]["containers"]:
            c = next(c for c in tmpl["spec"]["containers"] if c["name"] == pc["name"])
            env = {e["name"]: e for e in c.get("env", [])}
            env.update({e["name"]: e for e in pc["env"]})
            c["env"] = list(env.values())
    new["metadata"]["generation"] += 1
    return new


def progressed(dep: dict[str, Any], *, updated: int | None = None,
               available: int | None = None, total: int | None = None,
               observed: bool = True) -> dict[str, Any]:
    """``dep`` with the controller's view of its rollout."""
    new = copy.deepcopy(dep)
    replicas = new["spec"]["replicas"]
    new["status"] = {
        "observedGeneration": new["metadata"]["generation"] if observed else 0,
        "replicas": replicas if total is None else total,
        "updatedReplicas": replicas if updated is None else updated,
        "availableReplicas": replicas if available is None else available,
    }
    return new


def manifest(version: int, recall: float | None = 0.30, evaluated: int = 5000,
             **quality: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"evaluated": evaluated, "events": evaluated * 2,
                         "popularity_recall_at_10": 0.12, **quality}
    if recall is not None:
        q["recall_at_10"] = recall
    return {"version": version, "created": 1.7e9 + version, "items": 800,
            "checksum": f"sha256:{version:064x}", "quality": q}


def catalog(*manifests: dict[str, Any]) -> Catalog:
    by_version = {m["version"]: m for m in manifests}
    return Catalog(tuple(sorted(by_version)), by_version.get)


def engine_spec(policy: str = "Latest", version: int | None = None, *, deadline: int = 300,
                max_drop: float = 0.05, min_evaluated: int = 1000) -> dict[str, Any]:
    embedding: dict[str, Any] = {
        "policy": policy,
        "qualityGate": {"metric": "recall_at_10", "maxDrop": max_drop,
                        "minEvaluated": min_evaluated}}
    if version is not None:
        embedding["version"] = version
    return {"artifacts": {"secretRef": "movies-backends"},
            "index": {"deployment": "movies-index", "progressDeadlineSeconds": deadline},
            "embedding": embedding}
