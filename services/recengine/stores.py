"""User store and cache: the interfaces the trainer writes and the API reads. Their backends
(SQLite and MongoDB, in-process memory and Redis) live in :mod:`recengine.backends`, chosen by
URL scheme in :mod:`recengine.backends.registry`.

A user record carries the user's folded query vector ``[p_u * w, 1]`` (float32), their most
recent items with times (newest first: exclusion and the item-to-item signal at serving time),
their event count and when it was written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from recengine.config import BackendURL


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

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        """The store ``url`` names, for engine ``name`` (the prefix of its collections)."""

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


class Cache(ABC):
    """Fast, losable state: hot user records, "popular now" lists and item metadata."""

    in_process: bool = False
    """True for a cache private to this process: the trainer's writes never reach it, so the
    API fills its popular lists and item metadata from the newest embedding version itself.
    A shared cache (Redis) is filled by the trainer."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        """The cache ``url`` names, for engine ``name`` (the prefix of its keys)."""

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


