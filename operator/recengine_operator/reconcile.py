"""One reconciliation of a RecEngine, planned without I/O: observed state in, actions out.

:func:`plan` takes what the handler read (the resource's spec, status and generation, the
index Deployment, the published versions) and the time, and returns the new status, the patch
for the Deployment (if any) and the Kubernetes Events to post. It is level-triggered: it looks
only at the current state, so it can run at any moment, any number of times — after a missed
event, a restart, or twice in a row — and the second run with the same state plans nothing.

The in-progress rollout lives in the status (``targetVersion`` + ``rolloutStartedAt``, and
``rollback`` while rolling back), so a restarted operator follows it with the same deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recengine_operator import status as st
from recengine_operator.policy import ManifestLookup, choose_version
from recengine_operator.rollout import DeploymentState, Outcome, assess, observe, template_patch
from recengine_operator.spec import PINNED, EngineSpec, InvalidSpec, parse_spec

NORMAL = "Normal"
WARNING = "Warning"

#: Degraded reasons that an explicit rollout Event already announced.
_ANNOUNCED = ("RolledBack", "RolloutFailed", "QualityGateRejected")


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the RecEngine."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Catalog:
    """The published embedding versions, and a lookup of their manifests (``None``: unreadable)."""

    versions: Sequence[int]
    manifest: ManifestLookup


@dataclass
class Plan:
    status: dict[str, Any]
    """The complete new status (owned keys; ``None`` values are to be deleted)."""
    deployment_patch: dict[str, Any] | None = None
    """Strategic merge patch for the index Deployment (``None``: leave it alone)."""
    events: list[Event] = field(default_factory=list)

    def status_patch(self, old: Mapping[str, Any] | None) -> dict[str, Any]:
        return st.status_patch(old, self.status)


@dataclass
class _Work:
    """The status being built, plus what the conditions need to know."""

    s: dict[str, Any]
    now: datetime
    history_limit: int
    events: list[Event] = field(default_factory=list)
    problem: tuple[str, str] | None = None
    waiting: str = ""

    @property
    def now_text(self) -> str:
        return st.format_time(self.now)

    def event(self, etype: str, reason: str, message: str) -> None:
        self.events.append(Event(etype, reason, message))

    def history(self, version: int, result: str, started_at: str | None, reason: str) -> None:
        self.s["history"] = st.add_history(self.s.get("history"), version=version, result=result,
                                           started_at=started_at, finished_at=self.now_text,
                                           reason=reason, limit=self.history_limit)

    def fail(self, version: int, reason: str, message: str, generation: int) -> None:
        self.s["lastFailure"] = {"version": version, "reason": reason, "message": message,
                                 "generation": generation}


def plan(spec: Mapping[str, Any] | None, status: Mapping[str, Any] | None, generation: int,
         deployment: Mapping[str, Any] | None, *, catalog: Catalog | None,
         catalog_error: str | None = None, now: datetime, history_limit: int = 20,
         container: str = "index") -> Plan:
    """Plan one reconciliation. ``deployment`` is ``None`` when it does not exist; ``catalog``
    is ``None`` when the artifact store could not be read (``catalog_error`` says why)."""
    old = dict(status or {})
    w = _Work({k: old.get(k) for k in st.OWNED_KEYS}, now, history_limit)
    patch = None
    try:
        engine = parse_spec(spec)
    except InvalidSpec as exc:
        engine = None
        w.problem = ("InvalidSpec", str(exc))
    if engine is not None:
        _forgive(w, engine, old, generation)
        if deployment is None:
            w.problem = ("DeploymentNotFound", f"Deployment {engine.deployment} does not exist "
                                               "in this namespace")
        else:
            dep = observe(deployment, container)
            if not dep.has_container:
                w.problem = ("ContainerNotFound", f"Deployment {engine.deployment} has no "
                                                  f"container named {container!r}")
            else:
                patch = _advance(w, engine, dep, catalog, catalog_error, generation, container)
    w.s["observedGeneration"] = generation
    _conditions(w, old, engine, deployment is not None)
    return Plan(w.s, patch, w.events)


def needs_catalog(status: Mapping[str, Any] | None) -> bool:
    """Whether :func:`plan` will look at the published versions: only to choose a new target,
    never while following a rollout (which must not depend on the artifact store)."""
    status = status or {}
    return status.get("rolloutStartedAt") is None or status.get("targetVersion") is None


def with_problem(status: Mapping[str, Any] | None, reason: str, message: str, *,
                 now: datetime, generation: int) -> Plan:
    """The old status, Degraded for ``reason``: for when a planned action itself failed (e.g.
    the API refused the Deployment patch). Nothing else moves, so the next tick plans again;
    the Warning event is posted only when the condition changes."""
    old = dict(status or {})
    s = {k: old.get(k) for k in st.OWNED_KEYS}
    was = st.find_condition(old.get("conditions"), st.DEGRADED) or {}
    events = []
    if was.get("status") != "True" or was.get("reason") != reason:
        events.append(Event(WARNING, reason, message))
    s["conditions"] = st.set_condition(s.get("conditions"), st.DEGRADED, True, reason, message,
                                       now)
    s["phase"] = st.PHASE_DEGRADED
    s["observedGeneration"] = generation
    return Plan(s, None, events)


def _forgive(w: _Work, engine: EngineSpec, old: Mapping[str, Any], generation: int) -> None:
    """A changed spec is an explicit request: a pinned version that failed may be tried again,
    and a sticky failure is cleared (it is re-reported if it happens again)."""
    if old.get("observedGeneration") == generation:
        return
    if engine.policy == PINNED and engine.pinned_version in (w.s.get("failedVersions") or ()):
        w.s["failedVersions"] = [v for v in w.s["failedVersions"] if v != engine.pinned_version]
    failure = w.s.get("lastFailure")
    if failure and failure.get("generation") != generation:
        w.s["lastFailure"] = None


def _advance(w: _Work, engine: EngineSpec, dep: DeploymentState, catalog: Catalog | None,
             catalog_error: str | None, generation: int, container: str) -> dict | None:
    s = w.s
    rolling = s.get("rolloutStartedAt") is not None and s.get("targetVersion") is not None
    if not rolling:
        s["rolloutStartedAt"] = s["rollback"] = None
    if (s.get("currentVersion") is None and not rolling and dep.template_version is not None
            and dep.serves(dep.template_version) and dep.complete):
        # Status was lost (or the chart set a version): take over what the pods already serve.
        v = dep.template_version
        s["currentVersion"] = s["lastGoodVersion"] = s["targetVersion"] = v
        w.event(NORMAL, "Adopted", f"Deployment {dep.name} already serves version {v}")
    if rolling:
        return _follow(w, engine, dep, generation, container)
    return _choose(w, engine, dep, catalog, catalog_error, generation, container)


def _follow(w: _Work, engine: EngineSpec, dep: DeploymentState, generation: int,
            container: str) -> dict | None:
    s = w.s
    target = s["targetVersion"]
    started = st.parse_time(s["rolloutStartedAt"])
    if started is None:  # garbled: restart the clock rather than fail at once
        started = w.now
        s["rolloutStartedAt"] = w.now_text
    started_at = s["rolloutStartedAt"]
    progress = assess(dep, target, started, w.now, engine.progress_deadline_s)
    rollback = s.get("rollback")

    if progress.outcome in (Outcome.NOT_APPLIED, Outcome.IN_PROGRESS):
        w.waiting = f"waiting for version {target} to roll out"
        return template_patch(dep, target, container)

    if progress.outcome is Outcome.SUCCEEDED:
        s["currentVersion"] = s["lastGoodVersion"] = target
        s["rolloutStartedAt"] = s["rollback"] = None
        s["rejectedVersions"] = [v for v in s.get("rejectedVersions") or () if v > target]
        if rollback:
            w.event(NORMAL, "RolledBack", f"rolled back to version {target} after version "
                                          f"{rollback.get('failedVersion')} failed")
        else:
            s["lastFailure"] = None
            w.history(target, st.SUCCEEDED, started_at, progress.message)
            w.event(NORMAL, "RolloutSucceeded", f"version {target} rolled out: "
                                                f"{progress.message}")
        return None

    # Outcome.FAILED: the deadline passed.
    if rollback:
        w.problem = ("RollbackStalled", f"rolling back to version {target} after version "
                                        f"{rollback.get('failedVersion')} failed: "
                                        f"{progress.message}")
        return None
    s["failedVersions"] = st.remember(s.get("failedVersions"), target)
    good = s.get("lastGoodVersion")
    if good is not None and good != target:
        w.history(target, st.ROLLED_BACK, started_at, progress.message)
        w.fail(target, "RolledBack", f"version {target} failed to roll out, back to version "
                                     f"{good}: {progress.message}", generation)
        s["targetVersion"] = good
        s["rolloutStartedAt"] = w.now_text
        s["rollback"] = {"failedVersion": target, "reason": progress.message}
        w.event(WARNING, "RollingBack", f"{progress.message}; rolling back to version {good}")
        return template_patch(dep, good, container)
    message = (f"{progress.message}; no earlier good version to roll back to (old pods keep "
               "serving: maxUnavailable is 0)")
    w.history(target, st.FAILED, started_at, message)
    w.fail(target, "RolloutFailed", f"version {target} failed: {message}", generation)
    s["targetVersion"] = s.get("currentVersion")
    s["rolloutStartedAt"] = None
    w.event(WARNING, "RolloutFailed", message)
    return None


def _choose(w: _Work, engine: EngineSpec, dep: DeploymentState, catalog: Catalog | None,
            catalog_error: str | None, generation: int, container: str) -> dict | None:
    s = w.s
    current = s.get("currentVersion")
    reason = ""
    if catalog is None:
        w.problem = ("ArtifactsUnavailable",
                     f"cannot read the published versions: {catalog_error or 'unknown error'}")
        desired = current
    else:
        decision = choose_version(engine, catalog.versions, catalog.manifest, current=current,
                                  failed=s.get("failedVersions") or (),
                                  rejected=s.get("rejectedVersions") or ())
        for r in decision.rejected:
            s["rejectedVersions"] = st.remember(s.get("rejectedVersions"), r.version)
            w.history(r.version, st.REJECTED, None, r.reason)
            w.fail(r.version, "QualityGateRejected", r.reason, generation)
            w.event(WARNING, "QualityGateRejected", r.reason)
        if decision.problem:
            w.problem = decision.problem
        desired = decision.target if decision.target is not None else current
        reason = decision.reason
        w.waiting = decision.reason

    s["targetVersion"] = desired
    if desired is None:
        return None
    if desired == current and dep.serves(desired):
        return template_patch(dep, None, container)  # only the strategy, if someone changed it
    if desired == current:
        reason = (f"the pod template of {dep.name} no longer carries version {desired}; "
                  "restoring it")
    s["rolloutStartedAt"] = w.now_text
    s["rollback"] = None
    w.event(NORMAL, "RollingOut",
            f"rolling {dep.name} to version {desired} (serving {_name(current)}): {reason}")
    return template_patch(dep, desired, container)


def _conditions(w: _Work, old: Mapping[str, Any], engine: EngineSpec | None,
                deployment_found: bool) -> None:
    s = w.s
    conditions = s.get("conditions") or []
    current = s.get("currentVersion")
    rolling = s.get("rolloutStartedAt") is not None
    rollback = s.get("rollback")

    if current is not None and deployment_found:
        ready = (True, "Serving", f"index pods serve embedding version {current}")
    elif not deployment_found and engine is not None:
        ready = (False, "DeploymentNotFound", f"Deployment {engine.deployment} does not exist")
    else:
        ready = (False, "NoVersion", w.waiting or "no embedding version is served yet")
    conditions = st.set_condition(conditions, st.READY, *ready, w.now)

    if rolling:
        target = s.get("targetVersion")
        # No pod counts here: they would rewrite the status on every tick.
        if rollback:
            progressing = (True, "RollingBack",
                           f"rolling back to version {target} after version "
                           f"{rollback.get('failedVersion')} failed, since "
                           f"{s['rolloutStartedAt']}")
        else:
            progressing = (True, "RollingOut",
                           f"rolling out version {target} (serving {_name(current)}) since "
                           f"{s['rolloutStartedAt']}")
    else:
        progressing = (False, "Idle", "no rollout in progress")
    conditions = st.set_condition(conditions, st.PROGRESSING, *progressing, w.now)

    failure = s.get("lastFailure")
    if w.problem:
        degraded = (True, *w.problem)
    elif failure:
        degraded = (True, failure.get("reason") or "Failed", failure.get("message") or "")
    else:
        degraded = (False, "Healthy", "nothing to report")
    was = st.find_condition(old.get("conditions"), st.DEGRADED) or {}
    if degraded[0] and (was.get("status") != "True" or was.get("reason") != degraded[1]):
        if degraded[1] not in _ANNOUNCED:
            w.event(WARNING, degraded[1], degraded[2])
    elif not degraded[0] and was.get("status") == "True":
        w.event(NORMAL, "Recovered", f"no longer degraded ({was.get('reason')})")
    conditions = st.set_condition(conditions, st.DEGRADED, *degraded, w.now)

    s["conditions"] = conditions
    s["phase"] = st.phase(current=current, rolling_out=rolling, rolling_back=bool(rollback),
                          problem=w.problem is not None, failed=bool(failure))


def _name(version: int | None) -> str:
    return f"version {version}" if version is not None else "no managed version"
