"""Rolling the index Deployment: what it serves, how far a rollout is, and the patch that rolls.

A version is rolled by a strategic merge patch of the Deployment's pod template: the annotation
``recengine.io/embedding-version`` and the env ``RECENGINE_INDEX_VERSION`` of the index
container (merged by container name, so other containers and env vars are untouched). The same
patch makes the strategy a rolling update with ``maxUnavailable: 0``: old pods keep serving
until new ones are ready, so a version that never becomes ready costs no capacity.

Pure functions over plain dicts (the Deployment as the API returns it, camelCase keys).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

ANNOTATION = "recengine.io/embedding-version"
ENV_VAR = "RECENGINE_INDEX_VERSION"


@dataclass(frozen=True)
class DeploymentState:
    """What the operator needs to know of the index Deployment."""

    name: str
    template_version: int | None
    """The version the pod template's annotation names (``None``: not set by us, or garbled)."""
    env_version: str | None
    """``RECENGINE_INDEX_VERSION`` of the index container (``None``: not set)."""
    has_container: bool
    rolling_update: bool
    max_unavailable: Any
    max_surge: Any
    generation: int
    observed_generation: int
    replicas: int
    """Desired replicas (``spec.replicas``)."""
    updated: int
    available: int
    total: int
    """Pods of every ReplicaSet of the Deployment, old ones included (``status.replicas``)."""
    failure: str | None = None
    """Message of a ``ReplicaFailure`` condition, if the Deployment reports one."""

    @property
    def zero_unavailable(self) -> bool:
        return self.rolling_update and _is_zero(self.max_unavailable)

    @property
    def complete(self) -> bool:
        """The controller has seen the latest template, every pod runs it and is available,
        and no pod of an old ReplicaSet is left."""
        return (self.observed_generation >= self.generation
                and self.updated == self.replicas
                and self.available == self.replicas
                and self.total == self.replicas)

    def serves(self, version: int) -> bool:
        """The pod template carries ``version`` (annotation and env)."""
        return self.template_version == version and self.env_version == str(version)

    def progress(self) -> str:
        text = (f"{self.updated}/{self.replicas} updated, {self.available}/{self.replicas} "
                f"available, {self.total} pods in all")
        return text + (f"; {self.failure}" if self.failure else "")


def observe(deployment: Mapping[str, Any], container: str = "index") -> DeploymentState:
    """The facts of a Deployment the rollout logic needs (missing fields count as 0/absent)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template = spec.get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    index = next((c for c in containers if c.get("name") == container), None)
    env_version = None
    for var in (index or {}).get("env") or []:
        if var.get("name") == ENV_VAR:
            env_version = var.get("value")
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    failure = next((c.get("message") or c.get("reason") for c in status.get("conditions") or []
                    if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
    replicas = spec.get("replicas")
    return DeploymentState(
        name=meta.get("name", ""),
        template_version=_version(annotations.get(ANNOTATION)),
        env_version=env_version,
        has_container=index is not None,
        rolling_update=strategy.get("type", "RollingUpdate") == "RollingUpdate",
        max_unavailable=rolling.get("maxUnavailable", "25%"),
        max_surge=rolling.get("maxSurge", "25%"),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=1 if replicas is None else int(replicas),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        total=int(status.get("replicas") or 0),
        failure=failure,
    )


class Outcome(enum.Enum):
    NOT_APPLIED = "NotApplied"
    """The pod template does not carry the version yet: patch it."""
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """Not complete when the progress deadline passed."""


@dataclass(frozen=True)
class Progress:
    outcome: Outcome
    message: str


def assess(state: DeploymentState, version: int, started_at: datetime, now: datetime,
           deadline_s: float) -> Progress:
    """How far the rollout of ``version``, started at ``started_at``, has got by ``now``."""
    if not state.serves(version):
        return Progress(Outcome.NOT_APPLIED,
                        f"the pod template of {state.name} does not carry version {version}")
    if state.complete:
        return Progress(Outcome.SUCCEEDED,
                        f"all {state.replicas} pods of {state.name} serve version {version}")
    elapsed = (now - started_at).total_seconds()
    if elapsed > deadline_s:
        return Progress(Outcome.FAILED,
                        f"version {version} not ready after {int(elapsed)} s "
                        f"(progressDeadlineSeconds {deadline_s:g}): {state.progress()}")
    return Progress(Outcome.IN_PROGRESS,
                    f"{state.progress()} ({int(elapsed)} of {deadline_s:g} s)")


def template_patch(state: DeploymentState, version: int | None,
                   container: str = "index") -> dict[str, Any] | None:
    """The strategic merge patch that makes the Deployment serve ``version`` (``None``: only
    the strategy) with zero unavailable pods, or ``None`` when nothing needs to change."""
    spec: dict[str, Any] = {}
    if not state.zero_unavailable:
        rolling: dict[str, Any] = {"maxUnavailable": 0}
        if not state.rolling_update or _is_zero(state.max_surge):
            rolling["maxSurge"] = 1  # maxUnavailable 0 needs room to surge
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": rolling}
    if version is not None and not state.serves(version):
        spec["template"] = {
            "metadata": {"annotations": {ANNOTATION: str(version)}},
            "spec": {"containers": [
                {"name": container, "env": [{"name": ENV_VAR, "value": str(version)}]}]},
        }
    return {"spec": spec} if spec else None


def _version(raw: Any) -> int | None:
    try:
        value = int(str(raw))
    except ValueError:
        return None
    return value if value >= 1 else None


def _is_zero(value: Any) -> bool:
    return str(value).strip() in ("0", "0%")
