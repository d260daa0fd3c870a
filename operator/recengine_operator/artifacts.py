"""The published embedding versions, read through recengine's artifact stores.

The store is the one the trainer publishes to, named by the RecEngine's Secret
(``RECENGINE_ARTIFACTS_URL``, and ``RECENGINE_NAME`` for the Mongo collections' prefix); the
backend is chosen by URL scheme in :func:`recengine.backends.registry.open_artifact_store`
(``file://`` and ``mongodb://``). Stores stay open between ticks, and manifests are cached: a
published version is immutable, so its manifest is read once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from recengine.artifacts import ArtifactStore
from recengine.backends.registry import open_artifact_store
from recengine.config import Settings, parse_url
from recengine.errors import ArtifactError
from recengine_operator.reconcile import Catalog

URL_KEY = "RECENGINE_ARTIFACTS_URL"
NAME_KEY = "RECENGINE_NAME"
DEFAULT_NAME = Settings.name  # the engine name the trainer publishes under unless told

Opener = Callable[[Any, str], ArtifactStore]


def store_address(secret: dict[str, str] | None, secret_name: str) -> tuple[str, str]:
    """``(url, name)`` of the artifact store a RecEngine's Secret names; ``ValueError`` if the
    Secret does not say."""
    if secret is None:
        raise ValueError(f"Secret {secret_name} does not exist in this namespace")
    url = (secret.get(URL_KEY) or "").strip()
    if not url:
        raise ValueError(f"Secret {secret_name} has no key {URL_KEY}")
    return url, (secret.get(NAME_KEY) or "").strip() or DEFAULT_NAME


class Catalogs:
    """Open artifact stores by ``(url, name)``, with their manifests cached. Thread-safe."""

    def __init__(self, opener: Opener = open_artifact_store) -> None:
        self._opener = opener
        self._stores: dict[tuple[str, str], ArtifactStore] = {}
        self._manifests: dict[tuple[str, str], dict[int, dict]] = {}
        self._lock = threading.Lock()

    def load(self, url: str, name: str) -> Catalog:
        """The versions published in the store and their manifests (read now; cached ones
        reused). Raises :class:`recengine.errors.RecEngineError` if the store cannot be read."""
        key = (url, name)
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = self._opener(parse_url("artifacts", url), name)
                self._stores[key] = store
            cache = self._manifests.setdefault(key, {})
        try:
            versions = list(store.versions())
        except Exception:
            self._drop(key)  # reconnect next time
            raise
        manifests: dict[int, dict] = {}
        for v in versions:
            m = cache.get(v)
            if m is None:
                try:
                    m = store.manifest(v)
                except ArtifactError:
                    continue  # deleted (pruned) between listing and reading: not a candidate
                cache[v] = m
            manifests[v] = m
        with self._lock:  # forget versions the trainer pruned
            for v in [v for v in cache if v not in manifests]:
                del cache[v]
        return Catalog(tuple(sorted(manifests)), manifests.get)

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            store = self._stores.pop(key, None)
            self._manifests.pop(key, None)
        if store is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                store.close()

    def close(self) -> None:
        for key in list(self._stores):
            self._drop(key)
