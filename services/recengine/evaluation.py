"""Prequential (test-then-train) evaluation: recall@k of the model beside popularity's.

Before a round of events is learned, each evaluated event's user gets a top-k list over all
items seen so far minus the items that user already consumed; a hit is the event's true item in
that list (an item never seen before is a miss). The same list is made from plain all-time
popularity and from decayed popularity; every quality figure is compared with the stronger of
the two. Counts are kept both in total and over a rolling window of the last ``window``
evaluated events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class SeenItems:
    """Each user's consumed item rows, for exclusion (optionally only the last ``limit``)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.items: dict[int, list[int]] = {}

    def add(self, users: np.ndarray, items: np.ndarray,
            order: np.ndarray | None = None) -> None:
        """Append each user's items in order (grouped by user: one step per distinct user);
        ``order``: the stable sort of ``users``, when the caller has it already."""
        if len(users) == 0:
            return
        if order is None:
            order = np.argsort(users, kind="stable")
        su = users[order]
        starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
        bounds = np.r_[starts, len(su)].tolist()
        si = items[order].tolist()
        seen = self.items
        get = seen.get
        limit = self.limit
        for k, u in enumerate(su[starts].tolist()):
            lst = get(u)
            if lst is None:
                lst = seen[u] = si[bounds[k]:bounds[k + 1]]
            else:
                lst += si[bounds[k]:bounds[k + 1]]
            if limit is not None and len(lst) > 2 * limit:
                del lst[:-limit]

    def of(self, user: int) -> list[int]:
        return self.items.get(user, [])

    def mask(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """A (b, n_items) bool mask of seen items."""
        out = np.zeros((len(users), n_items), dtype=bool)
        for b, u in enumerate(users.tolist()):
            seen = self.items.get(u)
            if seen:
                idx = np.asarray(seen, dtype=np.int64)
                out[b, idx[idx < n_items]] = True
        return out

    def state(self) -> dict:
        return {"limit": self.limit, "items": self.items}

    @classmethod
    def from_state(cls, state: dict) -> SeenItems:
        s = cls(state["limit"])
        s.items = {int(k): list(v) for k, v in state["items"].items()}
        return s


@dataclass
class RecallTracker:
    """Total and rolling hit counts of the served ranking and of both popularity baselines.

    Two baselines, because neither is always the stronger: plain all-time popularity (counts)
    is hard to beat on many real streams, decayed popularity where tastes move. Every ratio the
    engine reports is against the stronger of the two (:attr:`popularity_recall`)."""

    k: int = 10
    window: int = 20000
    evaluated: int = 0
    hits: int = 0
    plain_hits: int = 0
    decayed_hits: int = 0
    ring: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int8))
    pos: int = 0
    curve: list[tuple[int, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ring.shape != (self.window, 3):
            self.ring = np.zeros((self.window, 3), dtype=np.int8)

    def record(self, hits: np.ndarray, plain_hits: np.ndarray, decayed_hits: np.ndarray,
               events_so_far: int) -> None:
        n = len(hits)
        if n == 0:
            return
        self.hits += int(hits.sum())
        self.plain_hits += int(plain_hits.sum())
        self.decayed_hits += int(decayed_hits.sum())
        idx = (self.pos + np.arange(n)) % self.window
        self.ring[idx, 0] = hits
        self.ring[idx, 1] = plain_hits
        self.ring[idx, 2] = decayed_hits
        self.pos += n
        before = self.evaluated
        self.evaluated += n
        step = max(100, self.window // 10)
        if self.evaluated // step > before // step:
            r, p = self.rolling()
            self.curve.append((events_so_far, r, p))

    def rolling_all(self) -> tuple[float, float, float]:
        """Rolling recall@k of the served ranking, plain and decayed popularity."""
        n = min(self.evaluated, self.window)
        if n == 0:
            return 0.0, 0.0, 0.0
        sums = self.ring[:n].sum(0) if self.evaluated < self.window else self.ring.sum(0)
        return float(sums[0]) / n, float(sums[1]) / n, float(sums[2]) / n

    def rolling(self) -> tuple[float, float]:
        """Rolling recall@k of the served ranking and of the stronger popularity baseline."""
        r, plain, decayed = self.rolling_all()
        return r, max(plain, decayed)

    @property
    def recall(self) -> float:
        return self.hits / self.evaluated if self.evaluated else 0.0

    @property
    def plain_popularity_recall(self) -> float:
        return self.plain_hits / self.evaluated if self.evaluated else 0.0

    @property
    def decayed_popularity_recall(self) -> float:
        return self.decayed_hits / self.evaluated if self.evaluated else 0.0

    @property
    def popularity_recall(self) -> float:
        """The stronger baseline's recall."""
        return max(self.plain_popularity_recall, self.decayed_popularity_recall)

    def state(self) -> dict:
        return {"k": self.k, "window": self.window, "evaluated": self.evaluated,
                "hits": self.hits, "plain_hits": self.plain_hits,
                "decayed_hits": self.decayed_hits, "ring": self.ring.copy(),
                "pos": self.pos, "curve": list(self.curve)}

    @classmethod
    def from_state(cls, state: dict) -> RecallTracker:
        return cls(**state)
