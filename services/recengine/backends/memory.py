"""The embedded cache: plain memory of this process (``memory://``)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Self

from recengine.config import BackendURL
from recengine.stores import Cache, UserRecord


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

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls()

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
