"""The ``spec`` of a RecEngine, read into a typed, validated object with its defaults.

The CRD's OpenAPI schema already rejects most mistakes at ``kubectl apply``; this module is the
last word (the operator may run against an older CRD), and turns a bad spec into
:class:`InvalidSpec` with one readable message for the ``Degraded`` condition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "recengine.io"
VERSION = "v1alpha1"
PLURAL = "recengines"
KIND = "RecEngine"

LATEST = "Latest"
PINNED = "Pinned"
POLICIES = (LATEST, PINNED)

DEFAULT_PROGRESS_DEADLINE_S = 300


class InvalidSpec(ValueError):
    """The spec cannot be acted on; the message says which field and why."""


@dataclass(frozen=True)
class QualityGate:
    """A version passes when its ``metric`` is at most ``max_drop`` below the current
    version's, relative to it (0.05: down to 95%), and the trainer evaluated it on at least
    ``min_evaluated`` events."""

    metric: str = "recall_at_10"
    max_drop: float = 0.05
    min_evaluated: int = 1000


@dataclass(frozen=True)
class EngineSpec:
    secret_ref: str
    deployment: str
    policy: str = LATEST
    pinned_version: int | None = None
    progress_deadline_s: int = DEFAULT_PROGRESS_DEADLINE_S
    gate: QualityGate = field(default_factory=QualityGate)


def parse_spec(spec: Mapping[str, Any] | None) -> EngineSpec:
    """The typed spec, or :class:`InvalidSpec` naming the first field that is wrong."""
    spec = spec or {}
    artifacts = _mapping(spec, "artifacts")
    index = _mapping(spec, "index")
    embedding = _mapping(spec, "embedding")
    gate_raw = _mapping(embedding, "qualityGate", "embedding.qualityGate")

    secret_ref = artifacts.get("secretRef")
    if not isinstance(secret_ref, str) or not secret_ref:
        raise InvalidSpec("spec.artifacts.secretRef must name a Secret in the same namespace")
    deployment = index.get("deployment")
    if not isinstance(deployment, str) or not deployment:
        raise InvalidSpec("spec.index.deployment must name the index Deployment")

    deadline = index.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
    if not _is_int(deadline) or deadline < 1:
        raise InvalidSpec("spec.index.progressDeadlineSeconds must be a whole number >= 1, "
                          f"not {deadline!r}")

    policy = embedding.get("policy", LATEST)
    if policy not in POLICIES:
        raise InvalidSpec(f"spec.embedding.policy must be Latest or Pinned, not {policy!r}")
    pinned = embedding.get("version")
    if policy == PINNED:
        if not _is_int(pinned) or pinned < 1:
            raise InvalidSpec("spec.embedding.version must be a version number >= 1 "
                              f"when the policy is Pinned, not {pinned!r}")
    else:
        pinned = None

    defaults = QualityGate()
    # Any metric of the manifest's quality (recall_at_<k> of the trainer's k, ...): a version
    # whose manifest lacks it is rejected, with that reason.
    metric = gate_raw.get("metric", defaults.metric)
    if not isinstance(metric, str) or not metric:
        raise InvalidSpec(f"spec.embedding.qualityGate.metric must name a quality metric of "
                          f"the manifests, not {metric!r}")
    max_drop = gate_raw.get("maxDrop", defaults.max_drop)
    if (isinstance(max_drop, bool) or not isinstance(max_drop, int | float)
            or not math.isfinite(max_drop) or not 0 <= max_drop <= 1):
        raise InvalidSpec(f"spec.embedding.qualityGate.maxDrop must be a relative drop "
                          f"between 0 and 1, not {max_drop!r}")
    min_evaluated = gate_raw.get("minEvaluated", defaults.min_evaluated)
    if not _is_int(min_evaluated) or min_evaluated < 0:
        raise InvalidSpec(f"spec.embedding.qualityGate.minEvaluated must be a whole number "
                          f">= 0, not {min_evaluated!r}")

    return EngineSpec(
        secret_ref=secret_ref, deployment=deployment, policy=policy, pinned_version=pinned,
        progress_deadline_s=int(deadline),
        gate=QualityGate(metric=metric, max_drop=float(max_drop),
                         min_evaluated=int(min_evaluated)))


def _mapping(parent: Mapping[str, Any], key: str, path: str | None = None) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"spec.{path or key} must be an object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
