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

A replica restarted under the same name (a crashed container in the same pod) takes its lease
back at once, with a new epoch, instead of waiting out its previous incarnation's lease.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


class FileLease(Lease):
    """The lease as a JSON file, read and written under an exclusive ``flock`` of a lock file:
    for trainers sharing a file artifact store (one machine, or one shared volume)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._local = threading.Lock()

    def _locked(self, change: Callable[[LeaseState | None], tuple[object, LeaseState | None]]
                ) -> object:
        """``change(state) -> (result, new state or None)``, atomically across processes."""
        with self._local:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = self._read()
                result, new = change(state)
                if new is not None:
                    tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(vars(new)))
                    os.replace(tmp, self.path)
                return result
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _read(self) -> LeaseState | None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return LeaseState(str(doc["holder"]), int(doc["epoch"]), float(doc["expires"]))

    def acquire(self, holder: str, ttl_s: float) -> int | None:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            now = time.time()
            if st is not None and st.holder != holder and st.expires > now:
                return None, None
            new = LeaseState(holder, (st.epoch if st else 0) + 1, now + ttl_s)
            return new.epoch, new
        return self._locked(change)  # type: ignore[return-value]

    def renew(self, holder: str, epoch: int, ttl_s: float) -> bool:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            if st is None or (st.holder, st.epoch) != (holder, epoch):
                return False, None
            return True, LeaseState(holder, epoch, time.time() + ttl_s)
        return bool(self._locked(change))

    def release(self, holder: str, epoch: int) -> None:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            if st is None or (st.holder, st.epoch) != (holder, epoch):
                return None, None
            return None, LeaseState(holder, epoch, 0.0)
        self._locked(change)

    def current(self) -> LeaseState | None:
        return self._locked(lambda st: (st, None))  # type: ignore[return-value]


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
