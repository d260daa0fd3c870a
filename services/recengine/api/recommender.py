"""What ``/recommend`` answers: for this user, like this item, or popular now.

Fallbacks, in order: a known user (vector + recent items) -> ``user``; else a known item ->
``item``; else "popular now" (per category when asked, overall when the category has none) ->
``popular``. The user's recent items are always excluded.

When a backend fails the request is answered from what is left, and the response lists the
parts that were ``degraded``: the cache (Redis) down -> users come from the user store
(MongoDB); the user store down -> hot users and popular items still come from the cache; the
index down -> popular items. Only when both the cache and the user store are down is there
nothing to answer with: :class:`Unavailable` (a 503 with the reason). Every backend call has a
timeout, and a backend that failed is skipped for ``retry_after_s`` so an outage costs each
request nothing rather than a timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from recengine.api.index_client import IndexClient, IndexNotFound, IndexUnavailable
from recengine.artifacts import ArtifactStore
from recengine.errors import BackendUnavailable, RecEngineError
from recengine.metrics import Metrics
from recengine.stores import Cache, UserRecord, UserStore

log = logging.getLogger("recengine.api")


class Unavailable(Exception):
    """Nothing can be served: the reason is returned to the client with a 503."""


class Breaker:
    """Skips a backend for ``retry_after_s`` after it failed (one probe request then)."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        self.name = name
        self.retry_after_s = retry_after_s
        self.down_until = 0.0
        self.reason = ""

    @property
    def open(self) -> bool:
        return time.monotonic() < self.down_until

    def failed(self, exc: Exception) -> None:
        if not self.open:
            log.warning("%s unavailable: %s", self.name, exc)
        self.down_until = time.monotonic() + self.retry_after_s
        self.reason = str(exc)

    def ok(self) -> None:
        self.down_until = 0.0


class Recommender:
    def __init__(self, users: UserStore, cache: Cache, index: IndexClient,
                 artifacts: ArtifactStore | None, metrics: Metrics,
                 catalog_refresh_s: float = 5.0, retry_after_s: float = 1.0,
                 metadata_ttl_s: float = 60.0) -> None:
        self.users = users
        self.cache = cache
        self.index = index
        self.artifacts = artifacts
        self.metrics = metrics
        self.catalog_refresh_s = catalog_refresh_s
        self._catalog_version = 0
        self._catalog_checked = 0.0
        self._lock = threading.Lock()
        self.cache_breaker = Breaker("cache", retry_after_s)
        self.users_breaker = Breaker("user store", retry_after_s)
        self.metadata_ttl_s = metadata_ttl_s
        self._meta: dict[str, tuple[float, dict]] = {}
        self._last_popular: dict[str, list[tuple[str, float]]] = {}

    # --- catalogue (embedded mode) -------------------------------------------------------------
    def refresh_catalog(self, force: bool = False) -> None:
        """With an in-process cache, popular lists and item metadata come from the newest
        embedding version (a shared cache such as Redis is filled by the trainer instead)."""
        if self.artifacts is None or not self.cache.in_process:
            return
        now = time.monotonic()
        if not force and now - self._catalog_checked < self.catalog_refresh_s:
            return
        with self._lock:
            self._catalog_checked = now
            try:
                versions = self.artifacts.versions()
                if not versions or versions[-1] == self._catalog_version:
                    return
                v = versions[-1]
                popular = json.loads(self.artifacts.blob(v, "popular.json"))
                items = json.loads(self.artifacts.blob(v, "items.json"))
            except (RecEngineError, OSError, ValueError) as exc:
                log.warning("could not refresh the catalogue: %s", exc)
                return
            self.cache.set_popular({k: [tuple(x) for x in val] for k, val in popular.items()})
            self.cache.put_items(items)
            self._catalog_version = v

    # --- lookups -------------------------------------------------------------------------------
    def _cached(self, user_id: str | None, category: str | None,
                degraded: list[str]) -> tuple[UserRecord | None, list | None]:
        """The user's record and the popular list from the cache, in one round trip."""
        if self.cache_breaker.open:
            degraded.append("cache")
            return None, None
        try:
            if user_id:
                record, popular = self.cache.get_user_and_popular(user_id, category)
            else:
                record, popular = None, self.cache.get_popular(category)
            if popular is None and category:
                popular = self.cache.get_popular(None)
        except BackendUnavailable as exc:
            self.cache_breaker.failed(exc)
            degraded.append("cache")
            return None, None
        self.cache_breaker.ok()
        if popular:
            self._last_popular[category or ""] = popular
        return record, popular

    def _stored(self, user_id: str, degraded: list[str], cache_ok: bool) -> UserRecord | None:
        if self.users_breaker.open:
            degraded.append("users")
            return None
        try:
            record = self.users.get(user_id)
        except BackendUnavailable as exc:
            self.users_breaker.failed(exc)
            degraded.append("users")
            return None
        self.users_breaker.ok()
        if record is not None and cache_ok:
            try:
                self.cache.put_users([record])
            except BackendUnavailable as exc:
                self.cache_breaker.failed(exc)
        return record

    def metadata(self, item_ids: list[str], degraded: list[str]) -> dict[str, dict]:
        """Item metadata through a short-lived in-process copy (usually no round trip)."""
        now = time.monotonic()
        out: dict[str, dict] = {}
        missing = []
        for i in item_ids:
            hit = self._meta.get(i)
            if hit is not None and hit[0] > now:
                out[i] = hit[1]
            else:
                missing.append(i)
        if missing and not self.cache_breaker.open:
            try:
                found = self.cache.get_items(missing)
            except BackendUnavailable as exc:
                self.cache_breaker.failed(exc)
                if "cache" not in degraded:
                    degraded.append("cache")
                return out
            if len(self._meta) > 200_000:
                self._meta.clear()
            for i in missing:
                doc = found.get(i, {})
                self._meta[i] = (now + self.metadata_ttl_s, doc)
                out[i] = doc
        return out

    # --- the answer ----------------------------------------------------------------------------
    def recommend(self, user_id: str | None, item_id: str | None, k: int,
                  category: str | None = None) -> dict[str, Any]:
        degraded: list[str] = []
        self.refresh_catalog()
        record, popular = self._cached(user_id, category, degraded)
        cache_ok = "cache" not in degraded
        if user_id and record is not None:
            self.metrics.incr("cache_hit")
        elif user_id:
            self.metrics.incr("cache_miss")
            record = self._stored(user_id, degraded, cache_ok)
        if not cache_ok and "users" in degraded:
            self.metrics.incr("unavailable")
            raise Unavailable("both the cache and the user store are unavailable: "
                              f"{self.cache_breaker.reason}; {self.users_breaker.reason}")
        recent = [i for i, _ in record.recent] if record else []
        exclude = list(dict.fromkeys(recent))
        items: list[dict] | None = None
        based_on = "popular"
        version: int | None = None
        try:
            if record is not None and len(record.vector):
                res = self.index.search(record.vector, k, exclude, recent)
                items, based_on, version = res["results"][0], "user", res["version"]
            elif item_id:
                try:
                    res = self.index.similar([item_id], k, exclude)
                    items, based_on, version = res["results"], "item", res["version"]
                except IndexNotFound:
                    items = None
        except IndexUnavailable as exc:
            log.warning("index unavailable, serving popular items: %s", exc)
            degraded.append("index")
        if not items:
            if popular is None:
                popular = self._last_popular.get(category or "") or self._last_popular.get("")
            skip = set(exclude) | ({item_id} if item_id else set())
            items = [{"item_id": i, "score": float(s)} for i, s in (popular or [])
                     if i not in skip][:k]
            based_on = "popular"
            version = version or self._catalog_version or None
        meta = self.metadata([x["item_id"] for x in items], degraded)
        for x in items:
            x["metadata"] = meta.get(x["item_id"], {})
        self.metrics.incr(f"based_on.{based_on}")
        out: dict[str, Any] = {"items": items, "based_on": based_on, "version": version,
                               "user_id": user_id, "item_id": item_id}
        if degraded:
            out["degraded"] = sorted(set(degraded))
            self.metrics.incr("degraded")
            for part in out["degraded"]:
                self.metrics.incr(f"degraded_by.{part}")
        return out
