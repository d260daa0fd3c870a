"""Id <-> row vocabulary: external string ids map to dense rows of an embedding table."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np


class Vocabulary:
    """Append-only mapping of ids to rows 0..n-1; rows are never reused, so tables only grow."""

    __slots__ = ("_ids", "_rows")

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self._ids: list[str] = list(ids)
        self._rows: dict[str, int] = {x: i for i, x in enumerate(self._ids)}
        if len(self._rows) != len(self._ids):
            raise ValueError("vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @property
    def ids(self) -> list[str]:
        """Ids in row order (a live view; do not mutate)."""
        return self._ids

    def get(self, key: str) -> int | None:
        return self._rows.get(key)

    def id(self, row: int) -> str:
        return self._ids[row]

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """Rows of keys, -1 for unknown ones."""
        return np.fromiter(map(self._rows.get, keys, repeat(-1)), dtype=np.int64,
                           count=len(keys))

    def add(self, keys: Sequence[str]) -> np.ndarray:
        """Rows of keys, assigning new rows (in order of first appearance) to unknown ones."""
        rows = self._rows
        out = np.fromiter(map(rows.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        new = np.flatnonzero(out < 0)
        if len(new):  # only the unknown keys take the per-key path
            ids = self._ids
            for n in new.tolist():
                k = keys[n]
                r = rows.get(k)
                if r is None:
                    r = len(ids)
                    rows[k] = r
                    ids.append(k)
                out[n] = r
        return out

    def state(self) -> list[str]:
        return list(self._ids)

    @classmethod
    def from_state(cls, ids: Sequence[str]) -> Vocabulary:
        return cls(ids)
