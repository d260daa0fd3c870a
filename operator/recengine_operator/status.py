"""The RecEngine ``status``: conditions, phase, bounded history and memory, and timestamps.

Conditions follow the Kubernetes conventions: ``type``, ``status`` (``"True"``/``"False"``),
``reason`` (CamelCase), ``message`` and ``lastTransitionTime``, which changes only when
``status`` changes (a new reason or message keeps it). Pure functions; the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED)

PENDING = "Pending"
PHASE_PROGRESSING = "Progressing"
PHASE_READY = "Ready"
PHASE_DEGRADED = "Degraded"

SUCCEEDED = "Succeeded"
ROLLED_BACK = "RolledBack"
REJECTED = "Rejected"
FAILED = "Failed"

#: Status keys the operator owns (the rest of ``status`` is left alone).
OWNED_KEYS = ("currentVersion", "targetVersion", "lastGoodVersion", "phase", "rolloutStartedAt",
              "rollback", "lastFailure", "failedVersions", "rejectedVersions", "history",
              "conditions", "observedGeneration")

#: How many failed / rejected version numbers are remembered.
MEMORY_LIMIT = 50


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A timestamp written by :func:`format_time` (or any ISO 8601 one); ``None`` if garbled."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def find_condition(conditions: Sequence[Mapping[str, Any]] | None,
                   ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == ctype), None)


def set_condition(conditions: Sequence[Mapping[str, Any]] | None, ctype: str, status: bool,
                  reason: str, message: str, now: datetime) -> list[dict[str, Any]]:
    """``conditions`` with ``ctype`` set; its ``lastTransitionTime`` moves only if the status
    flips (or the condition is new). Order: the known types first, then any others."""
    text = "True" if status else "False"
    old = find_condition(conditions, ctype)
    changed = old is None or old.get("status") != text or not old.get("lastTransitionTime")
    new = {"type": ctype, "status": text, "reason": reason, "message": message,
           "lastTransitionTime": format_time(now) if changed else old["lastTransitionTime"]}
    others = [dict(c) for c in conditions or () if c.get("type") != ctype]
    merged = [*others, new]
    rank = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(merged, key=lambda c: rank.get(c.get("type"), len(rank)))


def is_true(conditions: Sequence[Mapping[str, Any]] | None, ctype: str) -> bool:
    cond = find_condition(conditions, ctype)
    return cond is not None and cond.get("status") == "True"


def add_history(history: Sequence[Mapping[str, Any]] | None, *, version: int, result: str,
                started_at: str | None, finished_at: str, reason: str,
                limit: int = 20) -> list[dict[str, Any]]:
    """``history`` with one entry appended, keeping only the newest ``limit`` entries."""
    entry = {"version": version, "result": result, "startedAt": started_at or finished_at,
             "finishedAt": finished_at, "reason": reason}
    return [*(dict(h) for h in history or ()), entry][-limit:]


def remember(versions: Sequence[int] | None, version: int,
             limit: int = MEMORY_LIMIT) -> list[int]:
    """A bounded, sorted list of version numbers with ``version`` added."""
    return sorted({*(versions or ()), version})[-limit:]


def phase(*, current: int | None, rolling_out: bool, rolling_back: bool, problem: bool,
          failed: bool) -> str:
    """One word for ``kubectl get``. A rollback or a present problem is Degraded; a rollout is
    Progressing (even after an earlier failure: that is how it heals); a past failure not yet
    healed is Degraded; a served version is Ready; nothing served yet is Pending."""
    if rolling_back or problem:
        return PHASE_DEGRADED
    if rolling_out:
        return PHASE_PROGRESSING
    if failed:
        return PHASE_DEGRADED
    return PHASE_READY if current is not None else PENDING


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns the owned keys of ``old`` into ``new`` (``None`` deletes
    a key); empty when nothing changed."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key in OWNED_KEYS:
        value = new.get(key)
        if old.get(key) != value:
            patch[key] = value
    return patch
