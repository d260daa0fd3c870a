"""The embedded user store: one SQLite file (``sqlite:///path``)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from recengine.config import BackendURL
from recengine.errors import ConfigError
from recengine.stores import UserRecord, UserStore


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

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url.file_path)

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
