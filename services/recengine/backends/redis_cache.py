"""Redis cache (redis-py): hot user records, "popular now" sorted sets, item metadata.

Keys (``<name>`` is the engine name):

=============================  ============================================================
``<name>:user:<id>``           hash ``vector`` (float32 bytes), ``recent`` (JSON), ``events``,
                               ``updated``; expires after ``ttl_s`` (hot users only)
``<name>:popular``             sorted set item -> decayed count ("popular now", overall)
``<name>:popular:<category>``  the same per category
``<name>:items``               hash item -> metadata JSON
=============================  ============================================================

Every call has a socket timeout; a Redis that is down raises :class:`BackendUnavailable`
quickly. Popular lists are replaced atomically (written under a temporary key, then RENAME).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np
import redis

from recengine.config import BackendURL
from recengine.errors import BackendUnavailable
from recengine.stores import Cache, UserRecord


class RedisCache(Cache):
    def __init__(self, url: BackendURL, name: str, ttl_s: float = 3600.0,
                 timeout_s: float = 0.25) -> None:
        self.name = name
        self.ttl_s = int(ttl_s)
        self.r = redis.Redis.from_url(url.raw, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s,
                                      health_check_interval=0, retry_on_timeout=False)

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url, name)

    def _key(self, *parts: str) -> str:
        return ":".join((self.name, *parts))

    @staticmethod
    def _decode(user_id: str, h: dict) -> UserRecord | None:
        if not h or b"vector" not in h:
            return None
        return UserRecord(user_id, np.frombuffer(h[b"vector"], dtype=np.float32),
                          int(h.get(b"events", 0)),
                          [(i, float(t)) for i, t in json.loads(h.get(b"recent", b"[]"))],
                          float(h.get(b"updated", 0.0)), int(h.get(b"row", -1)))

    def get_user(self, user_id: str) -> UserRecord | None:
        try:
            return self._decode(user_id, self.r.hgetall(self._key("user", user_id)))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None

    def get_user_and_popular(self, user_id: str,
                             category: str | None) -> tuple[UserRecord | None,
                                                            list[tuple[str, float]] | None]:
        """The user's record and the popular list in one round trip (a pipeline)."""
        try:
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(self._key("user", user_id))
            pipe.zrevrange(self._popular_key(category), 0, 199, withscores=True)
            h, pop = pipe.execute()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None
        popular = [(m.decode(), float(s)) for m, s in pop] if pop else None
        return self._decode(user_id, h), popular

    def put_users(self, records: Iterable[UserRecord]) -> None:
        try:
            pipe = self.r.pipeline(transaction=False)
            for rec in records:
                key = self._key("user", rec.user_id)
                pipe.hset(key, mapping={
                    "vector": np.asarray(rec.vector, dtype=np.float32).tobytes(),
                    "recent": json.dumps(rec.recent), "events": int(rec.events),
                    "row": int(rec.row),
                    "updated": float(rec.updated or time.time())})
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None

    def _popular_key(self, category: str | None) -> str:
        return self._key("popular", category) if category else self._key("popular")

    def get_popular(self, category: str | None = None) -> list[tuple[str, float]] | None:
        try:
            pop = self.r.zrevrange(self._popular_key(category), 0, 199, withscores=True)
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None
        return [(m.decode(), float(s)) for m, s in pop] if pop else None

    def set_popular(self, lists: dict[str, list[tuple[str, float]]]) -> None:
        try:
            pipe = self.r.pipeline(transaction=True)
            for category, items in lists.items():
                if not items:
                    continue
                key = self._popular_key(category or None)
                tmp = key + ":next"
                pipe.delete(tmp)
                pipe.zadd(tmp, {item: float(score) for item, score in items})
                pipe.rename(tmp, key)
            pipe.execute()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None

    def get_items(self, item_ids: Sequence[str]) -> dict[str, dict]:
        if not item_ids:
            return {}
        try:
            values = self.r.hmget(self._key("items"), list(item_ids))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None
        return {i: json.loads(v) for i, v in zip(item_ids, values, strict=True) if v}

    def put_items(self, meta: dict[str, dict]) -> None:
        if not meta:
            return
        try:
            self.r.hset(self._key("items"), mapping={k: json.dumps(v) for k, v in meta.items()})
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis: {exc}") from None

    def close(self) -> None:
        self.r.close()
