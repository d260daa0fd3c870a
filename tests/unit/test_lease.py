"""The trainer lease on files: one holder at a time, takeover after expiry, epochs that fence."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from recengine.backends.files import FileArtifactStore, FileLease
from recengine.backends.registry import open_lease
from recengine.config import parse_url
from recengine.errors import BackendUnavailable
from recengine.lease import EPOCH_STRIDE, LeaseLost, TrainerLease, checkpoint_seq


def test_one_holder_at_a_time_until_the_lease_expires(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "trainer.lease")
    assert lease.current() is None
    assert lease.acquire("a", 0.5) == 1
    assert lease.acquire("b", 0.5) is None
    assert lease.renew("a", 1, 0.5)
    time.sleep(0.6)
    assert lease.acquire("b", 10) == 2  # expired: b takes over with a new epoch
    assert not lease.renew("a", 1, 10)  # a is fenced off
    st = lease.current()
    assert st is not None and (st.holder, st.epoch) == ("b", 2)


def test_a_restarted_replica_takes_its_own_lease_back_with_a_new_epoch(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "trainer.lease")
    assert lease.acquire("a", 60) == 1
    assert lease.acquire("a", 60) == 2  # the previous incarnation (epoch 1) is fenced
    assert not lease.renew("a", 1, 60)


def test_release_lets_a_standby_in_at_once(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "trainer.lease")
    assert lease.acquire("a", 60) == 1
    lease.release("b", 1)  # not b's to release
    assert lease.acquire("b", 60) is None
    lease.release("a", 1)
    assert lease.acquire("b", 60) == 2


def test_concurrent_acquires_elect_exactly_one(tmp_path: Path) -> None:
    url = parse_url("artifacts", f"file://{tmp_path}/artifacts")
    won: list[str] = []
    start = threading.Barrier(8)

    def contend(name: str) -> None:
        lease = open_lease(url)  # each its own handle, like separate processes
        start.wait()
        if lease.acquire(name, 60) is not None:
            won.append(name)

    threads = [threading.Thread(target=contend, args=(f"r{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_a_fenced_holders_checkpoints_never_become_the_latest() -> None:
    old = checkpoint_seq(0, 1)
    new = checkpoint_seq(old, 2)  # the new holder resumed from the old holder's checkpoint
    late = checkpoint_seq(old + 5, 1)  # the old holder, still writing for a moment
    assert old < late < new
    assert checkpoint_seq(new, 2) == new + 1
    assert new == 2 * EPOCH_STRIDE + 1
    assert checkpoint_seq(41, 0) == 42  # without a lease: plain sequence numbers


def test_checkpoints_of_a_later_epoch_are_listed_after_older_ones(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    store.put_checkpoint(7, b"old")
    store.put_checkpoint(3 * EPOCH_STRIDE + 1, b"new")
    assert store.checkpoints() == [7, 3 * EPOCH_STRIDE + 1]
    assert store.latest_checkpoint() == (3 * EPOCH_STRIDE + 1, b"new")


def test_the_replica_side_waits_renews_and_notices_a_takeover(tmp_path: Path) -> None:
    path = tmp_path / "trainer.lease"
    a = TrainerLease(FileLease(path), "a", ttl_s=1.0)
    b = TrainerLease(FileLease(path), "b", ttl_s=1.0)
    stop = threading.Event()
    assert a.wait(stop) == 1
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(b.wait(stop)))
    waiter.start()
    for _ in range(5):  # a keeps renewing: b stays a standby
        time.sleep(0.3)
        a.check(force=True)
    assert waiter.is_alive() and not got
    time.sleep(1.5)  # a stalls past its lease
    waiter.join(5)
    assert got == [2]
    with pytest.raises(LeaseLost, match="b holds the trainer lease"):
        a.check(force=True)
    b.release()
    stop.set()


class _FlakyLease(FileLease):
    """A lease whose store is unreachable for the first few calls (logic only)."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def acquire(self, holder: str, ttl_s: float) -> int | None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("store down")
        return super().acquire(holder, ttl_s)

    def release(self, holder: str, epoch: int) -> None:
        raise BackendUnavailable("store down")


def test_a_standby_waits_out_an_unreachable_store_and_logs_it_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flaky = _FlakyLease(tmp_path / "trainer.lease", failures=3)
    lease = TrainerLease(flaky, "a", ttl_s=5.0)
    with caplog.at_level("WARNING", logger="recengine.lease"):
        assert lease.wait(threading.Event()) == 1
        lease.release()  # the store is down again: the lease just expires
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("cannot reach the trainer lease" in m for m in warnings) == 1
    assert any("could not release" in m for m in warnings)
