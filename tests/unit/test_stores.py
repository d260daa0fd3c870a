"""User store and cache: the embedded backends keep what the trainer writes for the API."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from recengine.backends.memory import MemoryCache
from recengine.backends.registry import open_cache, open_user_store
from recengine.backends.sqlite import SQLiteUserStore
from recengine.config import parse_url
from recengine.errors import ConfigError
from recengine.stores import UserRecord


def _record(user_id: str, seed: int = 0, recent: int = 3) -> UserRecord:
    vector = np.random.default_rng(seed).normal(size=9).astype(np.float32)
    return UserRecord(user_id, vector, events=seed + 1,
                      recent=[(f"i{n}", 1000.0 - n) for n in range(recent)], updated=42.5,
                      row=seed)


def test_sqlite_store_round_trips_vectors_and_recent_items(tmp_path: Path) -> None:
    store = SQLiteUserStore(tmp_path / "users.db")
    store.upsert([_record("u1", 1), _record("u2", 2, recent=0)])
    got = store.get_many(["u1", "u2", "nobody"])
    assert set(got) == {"u1", "u2"}
    u1 = got["u1"]
    np.testing.assert_array_equal(u1.vector, _record("u1", 1).vector)  # bit for bit
    assert u1.vector.dtype == np.float32
    assert u1.recent == [("i0", 1000.0), ("i1", 999.0), ("i2", 998.0)]  # newest first
    assert (u1.events, u1.updated, u1.row) == (2, 42.5, 1)
    assert got["u2"].recent == []
    assert store.count() == 2


def test_sqlite_store_written_before_users_had_a_row_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (user_id TEXT PRIMARY KEY, vector BLOB NOT NULL,"
                     " events INTEGER NOT NULL, recent TEXT NOT NULL, updated REAL NOT NULL)")
        conn.execute("INSERT INTO users VALUES ('old', ?, 3, '[]', 1.0)",
                     (np.ones(4, dtype=np.float32).tobytes(),))
    store = SQLiteUserStore(path)
    old = store.get("old")
    assert old is not None and (old.events, old.row) == (3, -1)
    store.upsert([_record("new", 5)])
    assert store.get("new").row == 5  # type: ignore[union-attr]


def test_sqlite_upsert_replaces_a_users_record(tmp_path: Path) -> None:
    store = SQLiteUserStore(tmp_path / "users.db")
    store.upsert([_record("u1", 1)])
    newer = _record("u1", 7, recent=1)
    store.upsert([newer])
    got = store.get("u1")
    assert got is not None
    np.testing.assert_array_equal(got.vector, newer.vector)
    assert got.recent == [("i0", 1000.0)]
    assert store.count() == 1
    assert store.get("u2") is None


def test_sqlite_store_reads_many_users_in_chunks(tmp_path: Path) -> None:
    store = SQLiteUserStore(tmp_path / "users.db")
    store.upsert([_record(f"u{n}", n, recent=1) for n in range(1200)])
    got = store.get_many([f"u{n}" for n in range(1200)])
    assert len(got) == 1200
    assert store.get_many([]) == {}
    store.upsert([])  # nothing to write is fine


def test_sqlite_store_persists_across_connections_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    writer = SQLiteUserStore(path)
    writer.upsert([_record("u1", 1)])
    writer.close()
    reader = SQLiteUserStore(path)
    seen: list[UserRecord | None] = []
    thread = threading.Thread(target=lambda: seen.append(reader.get("u1")))
    thread.start()
    thread.join()
    assert seen[0] is not None and seen[0].user_id == "u1"


def test_sqlite_store_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SQLiteUserStore(tmp_path / "nope" / "users.db")


def test_backends_are_chosen_by_url_scheme(tmp_path: Path) -> None:
    store = open_user_store(parse_url("users", f"sqlite:///{tmp_path}/users.db"))
    assert isinstance(store, SQLiteUserStore)
    assert store.path == tmp_path / "users.db"
    assert isinstance(open_cache(parse_url("cache", "memory://")), MemoryCache)


def test_memory_cache_forgets_users_after_the_ttl() -> None:
    cache = MemoryCache(max_users=10, ttl_s=0.05)
    cache.put_users([_record("u1")])
    assert cache.get_user("u1") is not None
    time.sleep(0.1)
    assert cache.get_user("u1") is None
    assert cache.get_user("never") is None


def test_memory_cache_keeps_at_most_max_users_evicting_the_least_recently_used() -> None:
    cache = MemoryCache(max_users=2, ttl_s=60)
    cache.put_users([_record("a"), _record("b")])
    assert cache.get_user("a") is not None  # a is now the most recently used
    cache.put_users([_record("c")])
    assert cache.get_user("b") is None
    assert cache.get_user("a") is not None
    assert cache.get_user("c") is not None


def test_memory_cache_refreshes_a_users_record_and_ttl_on_put() -> None:
    cache = MemoryCache(max_users=2, ttl_s=60)
    cache.put_users([_record("a", 1)])
    cache.put_users([_record("a", 2)])
    got = cache.get_user("a")
    assert got is not None and got.events == 3


def test_memory_cache_keeps_popular_lists_and_item_metadata() -> None:
    cache = MemoryCache()
    assert cache.get_popular() is None
    cache.set_popular({"": [("i1", 3.0)], "books": [("i2", 1.0)]})
    assert cache.get_popular() == [("i1", 3.0)]
    assert cache.get_popular("books") == [("i2", 1.0)]
    assert cache.get_popular("films") is None
    cache.put_items({"i1": {"title": "One"}})
    cache.put_items({"i2": {"title": "Two"}})
    assert cache.get_items(["i1", "i2", "i3"]) == {"i1": {"title": "One"},
                                                   "i2": {"title": "Two"}}
