"""kopf registrations of the recengine operator, and nothing else: each handler delegates.

Every RecEngine event — create, resume (operator start), a spec change, and the timer — runs
the same idempotent reconciliation (``handlers/handle_recengine.py``). The timer makes it
level-triggered: a missed event or a restart never leaves a rollout half done.

No delete handler: the operator creates nothing (it only patches the Deployment the chart owns
and posts Events), so deleting a RecEngine leaves nothing of ours behind and the Deployment at
the version it serves. kopf still puts its finalizer (``recengine.io/operator``) on every
RecEngine, because a resource with a timer gets one, to stop the timer before the resource
goes; it is removed as soon as the deletion is requested.
"""

from __future__ import annotations

from typing import Any

import kopf

from recengine.errors import ConfigError
from recengine_operator.config import Config
from recengine_operator.handlers import handle_cleanup, handle_recengine, handle_startup
from recengine_operator.spec import GROUP, PLURAL, VERSION

try:
    CONFIG = Config.load()
except ConfigError as exc:
    raise SystemExit(f"recengine-operator: {exc}") from None


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    handle_startup.configure(settings, CONFIG, logger)
    memo.runtime = handle_startup.build_runtime(CONFIG)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    handle_cleanup.close(memo.get("runtime"))


RECENGINE = {"group": GROUP, "version": VERSION, "plural": PLURAL}


# A failed change handler is not retried by kopf: the timer reconciles again in a few seconds.
@kopf.on.create(**RECENGINE, id="create", errors=kopf.ErrorsMode.IGNORED)
@kopf.on.resume(**RECENGINE, id="resume", errors=kopf.ErrorsMode.IGNORED)
@kopf.on.update(**RECENGINE, id="update", field="spec", errors=kopf.ErrorsMode.IGNORED)
def changed(memo: kopf.Memo, namespace: str, name: str, logger: Any, **_: Any) -> None:
    handle_recengine.reconcile(memo.runtime, namespace, name, logger)


@kopf.timer(**RECENGINE, id="reconcile", interval=CONFIG.interval_s,
            idle=CONFIG.idle_s or None, errors=kopf.ErrorsMode.IGNORED)
def tick(memo: kopf.Memo, namespace: str, name: str, logger: Any, **_: Any) -> None:
    handle_recengine.reconcile(memo.runtime, namespace, name, logger)
