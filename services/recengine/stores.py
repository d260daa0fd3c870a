"""User store and cache: the interfaces the trainer writes and the API reads, and their
embedded backends (SQLite, in-process). Backends are chosen by URL scheme in
:func:`open_user_store` and :func:`open_cache`.

A user record carries the user's folded query vector ``[p_u * w, 1]`` (float32), their most
recent items with times (newest first: exclusion and the item-to-item signal at serving time),
their event count and when it was written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recengine.config import BackendURL
from recengine.errors import ConfigError


@dataclass
class UserRecord:
    user_id: str
    vector: np.ndarray
    events: int = 0
    recent: list[tuple[str, float]] = field(default_factory=list)
    updated: float = 0.0
    row: int = -1
    """The user's row in the model's embedding table when the record was written (-1:
    unknown); rows are never reused, so it identifies the user's vector across versions."""


class UserStore(ABC):
    """Durable per-user state, written in bulk by the trainer, read by the API."""

    @abstractmethod
    def upsert(self, records: Sequence[UserRecord]) -> None: ...

    @abstractmethod
    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserRecord]: ...

    def get(self, user_id: str) -> UserRecord | None:
        return self.get_many([user_id]).get(user_id)

    @abstractmethod
    def count(self) -> int: ...

    def close(self) -> None:
        """Release connections."""


class SQLiteUserStore(UserStore):
    """One row per user in a SQLite file (WAL mode: the API reads while the trainer writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise ConfigError(f"user store directory {self.path.parent} does not exist")
        self._local = threading.local()
        conn = self._conn()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, vector BLOB NOT NULL,"
            " events INTEGER NOT NULL, recent TEXT NOT NULL, updated REAL NOT NULL,"
            " row INTEGER NOT NULL DEFAULT -1)")
        columns = {c[1] for c in conn.execute("PRAGMA table_info(users)")}
        if "row" not in columns:  # a store written before users had a row
            conn.execute("ALTER TABLE users ADD COLUMN row INTEGER NOT NULL DEFAULT -1")
        conn.commit()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def upsert(self, records: Sequence[UserRecord]) -> None:
        if not records:
            return
        conn = self._conn()
        conn.executemany(
            "INSERT INTO users (user_id, vector, events, recent, updated, row)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(user_id) DO UPDATE SET vector=excluded.vector,"
            " events=excluded.events, recent=excluded.recent, updated=excluded.updated,"
            " row=excluded.row",
            [(r.user_id, np.asarray(r.vector, dtype=np.float32).tobytes(), int(r.events),
              json.dumps(r.recent), float(r.updated), int(r.row)) for r in records])
        conn.commit()

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        if not user_ids:
            return {}
        conn = self._conn()
        out: dict[str, UserRecord] = {}
        ids = list(user_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = conn.execute(
                "SELECT user_id, vector, events, recent, updated, row FROM users WHERE user_id"
                f" IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for uid, vec, events, recent, updated, row in rows:
                out[uid] = UserRecord(uid, np.frombuffer(vec, dtype=np.float32), events,
                                      [tuple(x) for x in json.loads(recent)], updated, row)
        return out

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class Cache(ABC):
    """Fast, losable state: hot user records, "popular now" lists and item metadata."""

    in_process: bool = False
    """True for a cache private to this process: the trainer's writes never reach it, so the
    API fills its popular lists and item metadata from the newest embedding version itself.
    A shared cache (Redis) is filled by the trainer."""

    @abstractmethod
    def get_user(self, user_id: str) -> UserRecord | None: ...

    def get_user_and_popular(self, user_id: str, category: str | None
                             ) -> tuple[UserRecord | None, list[tuple[str, float]] | None]:
        """The user's record and the popular list; a networked cache answers both in one
        round trip."""
        return self.get_user(user_id), self.get_popular(category)

    @abstractmethod
    def put_users(self, records: Iterable[UserRecord]) -> None: ...

    @abstractmethod
    def get_popular(self, category: str | None = None) -> list[tuple[str, float]] | None: ...

    @abstractmethod
    def set_popular(self, lists: dict[str, list[tuple[str, float]]]) -> None:
        """Replace the lists; key ``""`` is overall, other keys are categories."""

    @abstractmethod
    def get_items(self, item_ids: Sequence[str]) -> dict[str, dict]: ...

    @abstractmethod
    def put_items(self, meta: dict[str, dict]) -> None: ...

    def close(self) -> None:
        """Release connections."""


class MemoryCache(Cache):
    """In-process cache: bounded LRU of users with a TTL, plain dicts for the rest."""

    in_process = True

    def __init__(self, max_users: int = 100_000, ttl_s: float = 3600.0) -> None:
        self.max_users = max_users
        self.ttl_s = ttl_s
        self._users: OrderedDict[str, tuple[float, UserRecord]] = OrderedDict()
        self._popular: dict[str, list[tuple[str, float]]] = {}
        self._items: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get_user(self, user_id: str) -> UserRecord | None:
        with self._lock:
            hit = self._users.get(user_id)
            if hit is None:
                return None
            expires, record = hit
            if expires < time.monotonic():
                del self._users[user_id]
                return None
            self._users.move_to_end(user_id)
            return record

    def put_users(self, records: Iterable[UserRecord]) -> None:
        expires = time.monotonic() + self.ttl_s
        with self._lock:
            for r in records:
                self._users[r.user_id] = (expires, r)
                self._users.move_to_end(r.user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def get_popular(self, category: str | None = None) -> list[tuple[str, float]] | None:
        return self._popular.get(category or "")

    def set_popular(self, lists: dict[str, list[tuple[str, float]]]) -> None:
        self._popular = dict(lists)

    def get_items(self, item_ids: Sequence[str]) -> dict[str, dict]:
        items = self._items
        return {i: items[i] for i in item_ids if i in items}

    def put_items(self, meta: dict[str, dict]) -> None:
        self._items.update(meta)


def open_user_store(url: BackendURL, name: str = "recengine") -> UserStore:
    if url.scheme == "sqlite":
        return SQLiteUserStore(url.file_path)
    if url.scheme == "mongodb":
        from recengine.backends.mongo import MongoUserStore

        return MongoUserStore(url, name)
    raise ConfigError(f"users URL {url.raw!r}: unsupported scheme {url.scheme!r}")


def open_cache(url: BackendURL, name: str = "recengine") -> Cache:
    if url.scheme == "memory":
        return MemoryCache()
    if url.scheme == "redis":
        from recengine.backends.redis_cache import RedisCache

        return RedisCache(url, name)
    raise ConfigError(f"cache URL {url.raw!r}: unsupported scheme {url.scheme!r}")
