"""``recengine trainer``: open the backends named by the settings and run the loop."""

from __future__ import annotations

import logging
import threading

from recengine.artifacts import open_artifact_store
from recengine.config import Settings
from recengine.metrics import open_metrics
from recengine.sources import open_dead_letter, open_source
from recengine.stores import open_cache, open_user_store
from recengine.trainer.service import Trainer

log = logging.getLogger("recengine.trainer")


def build_trainer(settings: Settings) -> Trainer:
    """A trainer wired to the backends of ``settings``, resumed from its newest checkpoint."""
    source = open_source(settings)
    trainer = Trainer(
        settings,
        source=source,
        dlq=open_dead_letter(settings, source),
        artifacts=open_artifact_store(settings.url("artifacts"), settings.name),
        users=open_user_store(settings.url("users"), settings.name),
        cache=open_cache(settings.url("cache"), settings.name),
        metrics=open_metrics(settings.url("metrics"), "trainer"),
    )
    trainer.retrying(trainer.restore, "load the latest checkpoint")
    if hasattr(source, "on_revoke"):
        # Partitions leaving in a rebalance: checkpoint what was applied, so the next owner
        # starts exactly after it.
        source.on_revoke = lambda: trainer.retrying(trainer.checkpoint, "checkpoint")
    return trainer


def run_trainer(settings: Settings) -> int:
    from recengine.cli import install_stop_handlers

    trainer = build_trainer(settings)
    stop = threading.Event()
    install_stop_handlers(stop)
    log.info("trainer %s reading %s", settings.name, settings.events_url)
    try:
        trainer.run(stop)
    finally:
        trainer.close()
    c = trainer.c
    log.info("stopped: %d consumed, %d applied, %d rejected, %d versions published",
             c.consumed, c.applied, c.rejected, c.versions_published)
    return 0
