"""The trainer lease: which replica of an engine's trainer is the active one.

A RecEngine has one model, so exactly one trainer may learn from the stream, checkpoint and
publish; other replicas stand by and take over when the active one dies. They elect it with a
lease kept in the artifact store (where the checkpoints it guards live): a record ``{holder,
epoch, expires}``. The holder renews it as it makes progress; a standby takes it once it has
expired, and every takeover increments the *epoch*.

The epoch is also the fence. A holder that stalls past its lease (a long GC pause, a network
partition) may still believe it leads for a moment after a standby took over. Its checkpoints
carry its older epoch in their sequence number (:func:`checkpoint_seq`), so they never become
the latest one once the new holder has written its first: whichever checkpoint is latest is one
consistent snapshot of (model, stream position), so no event is lost or applied twice. Clock
skew between replicas only moves the moment of takeover.

The lease backends (a file beside the artifacts, a MongoDB document) live in
:mod:`recengine.backends`, chosen with the artifact store's URL.

A replica restarted under the same name (a crashed container in the same pod) takes its lease
back at once, with a new epoch, instead of waiting out its previous incarnation's lease.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Self

from recengine.config import BackendURL
from recengine.errors import BackendUnavailable

log = logging.getLogger("recengine.lease")

#: Checkpoint sequence numbers of one epoch: ``epoch * EPOCH_STRIDE + n``.
EPOCH_STRIDE = 10**9


def checkpoint_seq(previous: int, epoch: int) -> int:
    """The next checkpoint sequence number after ``previous`` for a holder of ``epoch``: above
    every number an older epoch can write, so a fenced-off holder never writes the latest."""
    return max(previous + 1, epoch * EPOCH_STRIDE + 1)


@dataclass(frozen=True)
class LeaseState:
    holder: str
    epoch: int
    expires: float


class LeaseLost(Exception):
    """Another replica holds the trainer lease now: stop learning, write nothing more."""


class Lease(ABC):
    """An exclusive, expiring lease with an epoch (a record in the artifact store)."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        """The trainer lease of engine ``name`` in the artifact store ``url`` names."""

    @abstractmethod
    def acquire(self, holder: str, ttl_s: float) -> int | None:
        """Take the lease if it is free, expired or already ``holder``'s (a restarted
        replica): returns the new epoch, or None while another replica holds it."""

    @abstractmethod
    def renew(self, holder: str, epoch: int, ttl_s: float) -> bool:
        """Extend the lease; False if it is no longer (``holder``, ``epoch``)'s."""

    @abstractmethod
    def release(self, holder: str, epoch: int) -> None:
        """Give the lease up now (a clean stop), if still held."""

    @abstractmethod
    def current(self) -> LeaseState | None:
        """Who holds the lease (possibly expired), or None if nobody ever did."""

    def close(self) -> None:
        """Release connections."""


class TrainerLease:
    """One replica's side of the lease: wait for it, renew it as work goes on, give it up."""

    def __init__(self, lease: Lease, holder: str, ttl_s: float) -> None:
        self.lease = lease
        self.holder = holder
        self.ttl_s = ttl_s
        self.epoch = 0
        self._renewed = 0.0

    def wait(self, stop: threading.Event) -> int | None:
        """Block until this replica holds the lease (its epoch), or None once ``stop`` is set.
        Logs one line when it starts standing by (or the store is down), not one per attempt;
        an unreachable store is waited out with backoff."""
        said = None
        delay = 0.2
        while not stop.is_set():
            try:
                epoch = self.lease.acquire(self.holder, self.ttl_s)
                st = self.lease.current() if epoch is None else None
            except BackendUnavailable as exc:
                if said != "down":
                    log.warning("cannot reach the trainer lease, retrying with backoff: %s", exc)
                    said = "down"
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2
            if epoch is not None:
                self.epoch, self._renewed = epoch, time.monotonic()
                log.info("%s holds the trainer lease (epoch %d)", self.holder, epoch)
                return epoch
            who = st.holder if st else "?"
            if who != said:
                log.info("standing by: %s holds the trainer lease (epoch %s)", who,
                         st.epoch if st else "?")
                said = who
            stop.wait(max(0.2, self.ttl_s / 5))
        return None

    def check(self, force: bool = False) -> None:
        """Renew the lease if a third of its time has passed (or ``force``); raise
        :class:`LeaseLost` when another replica took it."""
        if not force and time.monotonic() - self._renewed < self.ttl_s / 3:
            return
        if not self.lease.renew(self.holder, self.epoch, self.ttl_s):
            st = self.lease.current()
            raise LeaseLost(f"{st.holder if st else 'nobody'} holds the trainer lease now "
                            f"(epoch {st.epoch if st else '?'}; this replica had {self.epoch})")
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Give the lease up after a clean stop; if the store is down it simply expires."""
        if not self.epoch:
            return
        try:
            self.lease.release(self.holder, self.epoch)
        except BackendUnavailable as exc:
            log.warning("could not release the trainer lease (it expires in %.0fs): %s",
                        self.ttl_s, exc)
            return
        log.info("%s released the trainer lease (epoch %d)", self.holder, self.epoch)
