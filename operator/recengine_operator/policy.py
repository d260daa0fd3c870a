"""Which embedding version the index should serve: spec + published manifests + memory -> decision.

``Latest`` takes the newest published version, newer than the one served, that passes the
quality gate and has not failed a rollout before; a version that fails the gate is rejected
once, with its reason, and the caller remembers it so it is never judged again. ``Pinned``
takes the version the spec names, without a gate (a person chose it), if it exists.

Pure functions: no I/O, no clock. Manifests come through a lookup the caller provides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recengine_operator.spec import LATEST, EngineSpec, QualityGate

ManifestLookup = Callable[[int], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Rejection:
    """A version that failed the quality gate, and why."""

    version: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """The version to serve (``None``: keep what is served) and why.

    ``problem`` is set when the spec cannot be satisfied (a ``(reason, message)`` pair for the
    Degraded condition); ``rejected`` lists versions judged and rejected by this decision.
    """

    target: int | None
    reason: str
    rejected: tuple[Rejection, ...] = ()
    problem: tuple[str, str] | None = None


def metric_value(manifest: Mapping[str, Any] | None, metric: str) -> float | None:
    """The finite value of a quality metric in a manifest, or ``None``."""
    quality = (manifest or {}).get("quality") or {}
    value = quality.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def quality_summary(manifest: Mapping[str, Any] | None, metric: str) -> str:
    """The gated metric beside both popularity baselines the trainer measured on the same
    events (plain all-time and decayed counts), e.g. ``recall_at_10 0.1205 (plain popularity
    0.0554, decayed 0.0666: 1.81x the stronger)``; only the metric when they are absent."""
    value = metric_value(manifest, metric)
    if value is None:
        return f"no {metric}"
    suffix = metric.removeprefix("recall_at_")
    plain = metric_value(manifest, f"plain_popularity_recall_at_{suffix}")
    decayed = metric_value(manifest, f"decayed_popularity_recall_at_{suffix}")
    if plain is None or decayed is None:
        return f"{metric} {value:.4f}"
    stronger = max(plain, decayed)
    lift = f": {value / stronger:.2f}x the stronger" if stronger > 0 else ""
    return f"{metric} {value:.4f} (plain popularity {plain:.4f}, decayed {decayed:.4f}{lift})"


def gate_verdict(candidate: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None,
                 gate: QualityGate, *, version: int, current: int | None) -> str | None:
    """``None`` when ``candidate`` passes the gate, else the reason it does not.

    The drop is relative: with ``max_drop`` 0.05 a version may score down to 95% of the
    current version's metric, whatever the metric's scale.

    ``baseline`` is the manifest of the version served now (``None`` when nothing is served
    yet, or its manifest is gone: then only ``min_evaluated`` and the metric's presence count).
    """
    if candidate is None:
        return f"version {version} has no readable manifest"
    value = metric_value(candidate, gate.metric)
    if value is None:
        return f"version {version} reports no {gate.metric} in its manifest"
    evaluated = (candidate.get("quality") or {}).get("evaluated", 0)
    if isinstance(evaluated, bool) or not isinstance(evaluated, int | float):
        evaluated = 0
    if evaluated < gate.min_evaluated:
        return (f"version {version} was evaluated on {int(evaluated)} events, "
                f"fewer than minEvaluated {gate.min_evaluated}")
    base = metric_value(baseline, gate.metric)
    if base is not None and value < base * (1 - gate.max_drop):
        drop = (base - value) / base
        return (f"{gate.metric} of version {version} is {value:.4f}, {drop:.1%} below "
                f"{base:.4f} of version {current} (maxDrop {gate.max_drop:g})")
    return None


def choose_version(spec: EngineSpec, versions: Sequence[int], manifest: ManifestLookup, *,
                   current: int | None, failed: Collection[int] = (),
                   rejected: Collection[int] = ()) -> Decision:
    """The version the index should serve under the spec's policy.

    ``current`` is the version served now, ``failed`` the versions whose rollout failed, and
    ``rejected`` the versions already rejected by the gate (neither is judged again).
    """
    published = sorted(set(versions))
    if spec.policy == LATEST:
        return _latest(spec.gate, published, manifest, current, set(failed), set(rejected))
    return _pinned(spec.pinned_version, published, current, set(failed))


def _latest(gate: QualityGate, published: list[int], manifest: ManifestLookup,
            current: int | None, failed: set[int], rejected: set[int]) -> Decision:
    if not published:
        return Decision(None, "no embedding version has been published yet")
    newer = [v for v in reversed(published) if current is None or v > current]
    candidates = [v for v in newer if v not in failed and v not in rejected]
    if not candidates:
        if newer:
            return Decision(None, f"no new version to roll out: newer versions "
                                  f"{_list(newer)} failed before")
        return Decision(None, f"version {current} is the newest published")
    baseline = manifest(current) if current is not None else None
    rejections: list[Rejection] = []
    for v in candidates:
        why = gate_verdict(manifest(v), baseline, gate, version=v, current=current)
        if why is None:
            return Decision(v, f"version {v} is the newest that passes the quality gate: "
                               f"{quality_summary(manifest(v), gate.metric)}",
                            tuple(rejections))
        rejections.append(Rejection(v, why))
    return Decision(None, "no newer version passes the quality gate", tuple(rejections))


def _pinned(pinned: int | None, published: list[int], current: int | None,
            failed: set[int]) -> Decision:
    assert pinned is not None  # parse_spec guarantees it for Pinned
    if pinned not in published:
        return Decision(None, f"pinned version {pinned} does not exist",
                        problem=("PinnedVersionNotFound",
                                 f"pinned embedding version {pinned} is not published "
                                 f"(published: {_list(published[::-1]) or 'none'})"))
    if pinned in failed and pinned != current:
        return Decision(None, f"pinned version {pinned} failed to roll out",
                        problem=("PinnedVersionFailed",
                                 f"pinned embedding version {pinned} failed to roll out; "
                                 "change the spec (e.g. raise progressDeadlineSeconds) to "
                                 "try it again"))
    return Decision(pinned, f"version {pinned} is pinned")


def _list(versions: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in list(versions)[:10])
    return shown + (", ..." if len(versions) > 10 else "")
