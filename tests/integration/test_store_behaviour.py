"""One behaviour test class per store interface, run against the embedded backend and the
real server (same assertions): SQLite and MongoDB (FerretDB), in-process and Redis, files and
GridFS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from recengine.artifacts import ArtifactStore
from recengine.backends.files import FileArtifactStore
from recengine.backends.memory import MemoryCache
from recengine.backends.registry import open_artifact_store, open_cache, open_lease, open_user_store
from recengine.backends.sqlite import SQLiteUserStore
from recengine.config import parse_url
from recengine.errors import ArtifactError, ChecksumMismatch
from recengine.lease import Lease
from recengine.stores import Cache, UserRecord, UserStore
from recengine.versions import build_blobs, checksum, load_version


def _name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", pytest.param("mongodb", marks=pytest.mark.integration)])
def user_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[UserStore]:
    if request.param == "sqlite":
        store: UserStore = SQLiteUserStore(tmp_path / "users.db")
    else:
        store = open_user_store(parse_url("users", request.getfixturevalue("mongo_url")),
                                _name())
    yield store
    store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        c: Cache = MemoryCache()
    else:
        c = open_cache(parse_url("cache", request.getfixturevalue("redis_url")), _name())
    yield c
    c.close()


@pytest.fixture(params=["file", pytest.param("mongodb", marks=pytest.mark.integration)])
def artifacts(request: pytest.FixtureRequest, tmp_path) -> Iterator[ArtifactStore]:
    if request.param == "file":
        store: ArtifactStore = FileArtifactStore(tmp_path / "artifacts")
    else:
        store = open_artifact_store(parse_url("artifacts", request.getfixturevalue("mongo_url")),
                                    _name())
    yield store
    store.close()


@pytest.fixture(params=["file", pytest.param("mongodb", marks=pytest.mark.integration)])
def lease(request: pytest.FixtureRequest, tmp_path) -> Iterator[Lease]:
    url = (f"file://{tmp_path}/artifacts" if request.param == "file"
           else request.getfixturevalue("mongo_url"))
    held = open_lease(parse_url("artifacts", url), _name())
    yield held
    held.close()


def _record(uid: str, seed: int = 0) -> UserRecord:
    rng = np.random.default_rng(seed)
    return UserRecord(uid, rng.normal(size=65).astype(np.float32), events=seed + 1,
                      recent=[(f"i{seed}", 1.7e9 + seed), ("i0", 1.7e9)], updated=time.time(),
                      row=seed)


class TestUserStore:
    def test_bulk_upsert_then_read_back_vectors_and_recent_items(self, user_store) -> None:
        records = [_record(f"u{n}", n) for n in range(300)]
        user_store.upsert(records)
        got = user_store.get_many([f"u{n}" for n in range(0, 300, 7)] + ["nobody"])
        assert set(got) == {f"u{n}" for n in range(0, 300, 7)}
        for uid, rec in got.items():
            want = records[int(uid[1:])]
            np.testing.assert_array_equal(rec.vector, want.vector)
            assert rec.recent == want.recent and rec.events == want.events
            assert rec.row == want.row and rec.updated == want.updated
        assert user_store.count() == 300

    def test_upsert_replaces_an_existing_user(self, user_store) -> None:
        user_store.upsert([_record("u1", 1)])
        user_store.upsert([_record("u1", 2)])
        rec = user_store.get("u1")
        assert rec is not None and rec.events == 3 and rec.recent[0] == ("i2", 1.7e9 + 2)
        assert user_store.count() == 1


class TestCache:
    def test_users_round_trip(self, cache) -> None:
        rec = _record("u7", 7)
        cache.put_users([rec])
        got = cache.get_user("u7")
        assert got is not None
        np.testing.assert_array_equal(got.vector, rec.vector)
        assert got.recent == rec.recent
        assert (got.events, got.row) == (rec.events, rec.row)
        assert cache.get_user("nobody") is None

    def test_popular_lists_overall_and_per_category_are_replaced_whole(self, cache) -> None:
        cache.set_popular({"": [("a", 3.0), ("b", 2.0)], "drama": [("d", 1.0)]})
        cache.set_popular({"": [("c", 9.0), ("a", 1.0)], "drama": [("e", 4.0)]})
        assert cache.get_popular() == [("c", 9.0), ("a", 1.0)]
        assert cache.get_popular("drama") == [("e", 4.0)]
        assert cache.get_popular("unknown") is None

    def test_item_metadata_in_one_call(self, cache) -> None:
        cache.put_items({"a": {"title": "A", "category": "x"}, "b": {"title": "B"}})
        assert cache.get_items(["a", "b", "zzz"]) == {"a": {"title": "A", "category": "x"},
                                                      "b": {"title": "B"}}


def _blobs(n: int = 50, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    return build_blobs(item_ids=[f"i{k}" for k in range(n)],
                       vectors=rng.normal(size=(n, 9)).astype(np.float32),
                       output_weights=np.ones(8, np.float32),
                       neighbour_ids=np.zeros((n, 3), np.int32),
                       neighbour_weights=np.zeros((n, 3), np.float32),
                       popular={"": [["i0", 1.0]]}, items_meta={"i0": {"title": "zero"}})


class TestArtifactStore:
    def test_versions_are_numbered_and_load_verified(self, artifacts) -> None:
        assert artifacts.versions() == []
        numbers = [artifacts.publish(*_blobs(seed=s)) for s in range(3)]
        assert numbers == [1, 2, 3] and artifacts.versions() == [1, 2, 3]
        v = load_version(artifacts, "latest")
        assert v.number == 3 and v.items_meta == {"i0": {"title": "zero"}}
        assert artifacts.manifest(2)["version"] == 2

    def test_a_blob_that_does_not_match_the_checksum_is_refused(self, artifacts) -> None:
        blobs, manifest = _blobs()
        manifest = {**manifest, "checksum": checksum({**blobs, "items.json": b"{}"})}
        if isinstance(artifacts, FileArtifactStore):
            artifacts.publish(blobs, manifest)
            with pytest.raises(ChecksumMismatch):
                load_version(artifacts, 1)
        else:  # GridFS verifies before the version becomes visible
            with pytest.raises(ArtifactError):
                artifacts.publish(blobs, manifest)
            assert artifacts.versions() == []

    def test_pruning_keeps_the_newest_and_the_protected(self, artifacts) -> None:
        for s in range(5):
            artifacts.publish(*_blobs(seed=s))
        removed = artifacts.prune_versions(2, protect={1})
        assert removed == [2, 3] and artifacts.versions() == [1, 4, 5]
        with pytest.raises(ArtifactError):
            artifacts.manifest(2)

    def test_checkpoints_latest_and_pruning(self, artifacts) -> None:
        assert artifacts.latest_checkpoint() is None
        for seq in (1, 2, 3):
            artifacts.put_checkpoint(seq, bytes([seq]) * 1000)
        assert artifacts.latest_checkpoint() == (3, b"\x03" * 1000)
        artifacts.prune_checkpoints(2)
        assert artifacts.checkpoints() == [2, 3]


class TestServingMarks:
    def test_a_version_an_index_pod_serves_is_never_pruned(self, artifacts) -> None:
        for s in range(5):
            artifacts.publish(*_blobs(seed=s))
        artifacts.mark_serving("index-pod-a", 1)
        artifacts.mark_serving("index-pod-b", 2)
        artifacts.mark_serving("index-pod-b", 3)  # pod b moved on from 2 to 3
        assert artifacts.serving() == {1, 3}
        assert artifacts.prune_versions(1) == [2, 4]
        assert artifacts.versions() == [1, 3, 5]

    def test_a_stale_mark_protects_nothing(self, artifacts) -> None:
        for s in range(3):
            artifacts.publish(*_blobs(seed=s))
        artifacts.mark_serving("gone-pod", 1)
        assert artifacts.serving(max_age_s=-1) == set()
        marks = artifacts.serving_marks()
        assert marks["gone-pod"][0] == 1


class TestTrainerLease:
    def test_one_holder_until_expiry_then_a_takeover_with_a_new_epoch(self, lease) -> None:
        assert lease.current() is None
        assert lease.acquire("a", 0.6) == 1
        assert lease.acquire("b", 0.6) is None
        assert lease.renew("a", 1, 0.6)
        time.sleep(0.8)
        assert lease.acquire("b", 30) == 2
        assert not lease.renew("a", 1, 30)
        st = lease.current()
        assert st is not None and (st.holder, st.epoch) == ("b", 2)

    def test_release_and_restart_under_the_same_name(self, lease) -> None:
        assert lease.acquire("a", 30) == 1
        assert lease.acquire("a", 30) == 2  # a restarted replica fences its predecessor
        lease.release("a", 1)  # the predecessor's release changes nothing
        assert lease.acquire("b", 30) is None
        lease.release("a", 2)
        assert lease.acquire("b", 30) == 3

    def test_checkpoints_of_a_later_epoch_win(self, artifacts) -> None:
        from recengine.lease import checkpoint_seq

        old = checkpoint_seq(0, 1)
        new = checkpoint_seq(old, 2)
        artifacts.put_checkpoint(new, b"new holder")
        artifacts.put_checkpoint(checkpoint_seq(old, 1), b"fenced holder, writing late")
        assert artifacts.latest_checkpoint() == (new, b"new holder")
