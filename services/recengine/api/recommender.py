"""What ``/recommend`` answers: for this user, like this item, or popular now.

Fallbacks, in order: a known user (vector + recent items) -> ``user``; else a known item ->
``item``; else "popular now" (per category when asked) -> ``popular``. The user's recent items
are always excluded. When the index service cannot answer, the request falls back to popular
items and the response lists the part that was ``degraded`` rather than failing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from recengine.api.index_client import IndexClient, IndexNotFound, IndexUnavailable
from recengine.artifacts import ArtifactStore
from recengine.errors import RecEngineError
from recengine.metrics import Metrics
from recengine.stores import Cache, MemoryCache, UserRecord, UserStore

log = logging.getLogger("recengine.api")


class Recommender:
    def __init__(self, users: UserStore, cache: Cache, index: IndexClient,
                 artifacts: ArtifactStore | None, metrics: Metrics,
                 catalog_refresh_s: float = 5.0) -> None:
        self.users = users
        self.cache = cache
        self.index = index
        self.artifacts = artifacts
        self.metrics = metrics
        self.catalog_refresh_s = catalog_refresh_s
        self._catalog_version = 0
        self._catalog_checked = 0.0
        self._lock = threading.Lock()

    # --- catalogue (embedded mode) -------------------------------------------------------------
    def refresh_catalog(self, force: bool = False) -> None:
        """With an in-process cache, popular lists and item metadata come from the newest
        embedding version (a shared cache such as Redis is filled by the trainer instead)."""
        if self.artifacts is None or not isinstance(self.cache, MemoryCache):
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
    def user(self, user_id: str) -> UserRecord | None:
        record = self.cache.get_user(user_id)
        if record is not None:
            self.metrics.incr("cache_hit")
            return record
        self.metrics.incr("cache_miss")
        record = self.users.get(user_id)
        if record is not None:
            self.cache.put_users([record])
        return record

    def popular(self, k: int, exclude: set[str], category: str | None) -> list[dict]:
        self.refresh_catalog()
        lst = self.cache.get_popular(category) or ([] if category else None) or []
        out = [{"item_id": i, "score": float(s)} for i, s in lst if i not in exclude]
        return out[:k]

    # --- the answer ----------------------------------------------------------------------------
    def recommend(self, user_id: str | None, item_id: str | None, k: int,
                  category: str | None = None) -> dict[str, Any]:
        degraded: list[str] = []
        self.refresh_catalog()
        record = self.user(user_id) if user_id else None
        recent = [i for i, _ in record.recent] if record else []
        exclude = list(dict.fromkeys(recent))
        items: list[dict] | None = None
        based_on = "popular"
        version: int | None = None
        try:
            if record is not None and len(record.vector):
                res = self.index.search([float(x) for x in record.vector], k, exclude, recent)
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
            self.metrics.incr("degraded")
        if not items:
            items = self.popular(k, set(exclude) | ({item_id} if item_id else set()), category)
            based_on = "popular"
            version = version or self._catalog_version or None
        meta = self.cache.get_items([x["item_id"] for x in items])
        for x in items:
            x["metadata"] = meta.get(x["item_id"], {})
        self.metrics.incr(f"based_on.{based_on}")
        out: dict[str, Any] = {"items": items, "based_on": based_on, "version": version,
                               "user_id": user_id, "item_id": item_id}
        if degraded:
            out["degraded"] = degraded
        return out
