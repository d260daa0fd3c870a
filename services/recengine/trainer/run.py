"""``recengine trainer``: win the trainer lease, open the backends and run the loop.

Several replicas of one engine's trainer may run (the chart's ``trainer.replicas``): the one
that holds the lease (:mod:`recengine.lease`) learns; the others stand by, connected to the
artifact store only, and take over from the latest checkpoint when the lease expires or is
released. A replica that loses the lease (it stalled past it) stops at once without writing
anything more and stands by again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from recengine.backends.registry import (
    open_artifact_store,
    open_cache,
    open_dead_letter,
    open_lease,
    open_metrics,
    open_source,
    open_user_store,
)
from recengine.config import Settings
from recengine.lease import LeaseLost, TrainerLease
from recengine.trainer.learner import warm_up
from recengine.trainer.service import Trainer

log = logging.getLogger("recengine.trainer")


def build_trainer(settings: Settings, lease: TrainerLease | None = None) -> Trainer:
    """A trainer wired to the backends of ``settings``, resumed from its newest checkpoint
    (with ``lease``: one that writes only while it holds it)."""
    source = open_source(settings)
    trainer = Trainer(
        settings,
        source=source,
        dlq=open_dead_letter(settings, source),
        artifacts=open_artifact_store(settings.url("artifacts"), settings.name),
        users=open_user_store(settings.url("users"), settings.name),
        cache=open_cache(settings.url("cache"), settings.name),
        metrics=open_metrics(settings.url("metrics"), "trainer"),
        lease=lease,
    )
    trainer.retrying(trainer.restore, "load the latest checkpoint")
    trainer.retrying(trainer.sweep, "sweep orphaned artifacts")
    # Partitions leaving in a rebalance: checkpoint what was applied, so the next owner starts
    # exactly after it.
    source.on_revoke = lambda: trainer.retrying(trainer.checkpoint, "checkpoint")
    return trainer


def preflight(settings: Settings) -> None:
    """Open and close the local (file, SQLite) backends, so a bad setting stops the process
    with its one line before it waits for the lease; network backends are opened once it
    holds the lease (a standby must not join the consumer group)."""
    if settings.url("events").scheme == "file":
        source = open_source(settings)
        if settings.url("dlq").scheme == "file":
            open_dead_letter(settings, source).close()
        source.close()
    if settings.url("users").scheme == "sqlite":
        open_user_store(settings.url("users"), settings.name).close()


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` so the trainer finishes its batch and checkpoints."""
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_trainer(settings: Settings) -> int:
    preflight(settings)
    started = time.monotonic()
    warm_up(settings)  # before the lease wait: a standby takes over with its kernels compiled
    log.info("learner kernels ready in %.1f s", time.monotonic() - started)
    stop = threading.Event()
    install_stop_handlers(stop)
    store_lease = open_lease(settings.url("artifacts"), settings.name)
    lease = TrainerLease(store_lease, settings.instance_name, settings.lease_ttl_s)
    try:
        while not stop.is_set():
            if lease.wait(stop) is None:
                break
            trainer = build_trainer(settings, lease)
            log.info("trainer %s (%s) reading %s", settings.name, lease.holder,
                     settings.url("events").redacted)
            try:
                trainer.run(stop)
            except LeaseLost as exc:
                log.warning("lost the trainer lease, standing by: %s", exc)
                continue
            finally:
                trainer.close()
            c = trainer.c
            log.info("stopped: %d consumed, %d applied, %d rejected, %d versions published",
                     c.consumed, c.applied, c.rejected, c.versions_published)
            lease.release()  # after the final checkpoint: a standby takes over at once
            break
    finally:
        store_lease.close()
    return 0
