"""Durable user writes off the learning loop.

The cache gets each flush at once (it is what the API reads first, so it decides freshness);
the user store, the durable copy, is written by this background thread. Records are coalesced
per user (only the newest of a user is written), so a slow store — or one that is down for a
while — delays durability without slowing learning or growing a backlog beyond one record per
user. Nothing here affects the model: the user store is derived state, and a restarted trainer
rewrites every user from its checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from recengine.errors import BackendUnavailable
from recengine.metrics import Metrics
from recengine.stores import UserRecord, UserStore

log = logging.getLogger("recengine.trainer")


class UserWriter:
    def __init__(self, store: UserStore, metrics: Metrics, batch: int = 5000) -> None:
        self.store = store
        self.metrics = metrics
        self.batch = batch
        self._pending: dict[str, UserRecord] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="user-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[UserRecord]) -> None:
        with self._cond:
            for r in records:
                self._pending[r.user_id] = r
            self._cond.notify()
        self.metrics.gauge("user_writes_pending", len(self._pending))

    def _take(self) -> list[UserRecord]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            keys = list(self._pending)[: self.batch]
            self._busy = bool(keys)
            return [self._pending.pop(k) for k in keys]

    def _run(self) -> None:
        delay = 0.2
        down = False
        while True:
            records = self._take()
            if not records:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                if self._closed:
                    return
                continue
            try:
                t0 = time.perf_counter()
                self.store.upsert(records)
                self.metrics.timing("user_store_write_ms", (time.perf_counter() - t0) * 1000)
                if down:
                    log.warning("user store available again")
                    down, delay = False, 0.2
            except BackendUnavailable as exc:
                if not down:
                    log.warning("user store unavailable, retrying with backoff: %s", exc)
                    down = True
                with self._cond:  # put them back unless a newer record arrived meanwhile
                    for r in records:
                        self._pending.setdefault(r.user_id, r)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until everything submitted is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self, timeout_s: float = 60.0) -> None:
        self.drain(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
