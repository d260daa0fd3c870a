"""Time-decayed popularity from the stream: a weighted Space-Saving heavy-hitters sketch.

Counts use forward decay: an event at time t adds ``w * 2**((t - t_ref) / half_life)``, so old
counts never need touching; ``t_ref`` moves forward (rescaling every counter once) before the
exponent grows large. A count read at time ``now`` is ``c * 2**((t_ref - now) / half_life)``.
Memory is fixed (``capacity`` counters) whatever the catalogue size; the top entries are the
heavy hitters with Space-Saving's guarantee (an item whose decayed weight exceeds
total/capacity is always kept).
"""

from __future__ import annotations

import numpy as np

_RESCALE_EXPONENT = 40.0


class DecayedTopK:
    """Weighted Space-Saving over integer keys with exponential time decay."""

    def __init__(self, capacity: int, half_life_s: float, t_ref: float = 0.0) -> None:
        if capacity < 1 or half_life_s <= 0:
            raise ValueError("capacity and half_life_s must be positive")
        self.capacity = capacity
        self.half_life_s = half_life_s
        self.t_ref = t_ref
        self.keys = np.full(capacity, -1, dtype=np.int64)
        self.counts = np.zeros(capacity, dtype=np.float64)
        self._used = 0
        self._index()

    def _index(self) -> None:
        """Tracked keys sorted, with their slots: a batch finds its keys by binary search."""
        used = self.keys[: self._used]
        self._order = np.argsort(used, kind="stable")
        self._sorted = used[self._order]

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 if untracked."""
        if not len(self._sorted):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, keys), len(self._sorted) - 1)
        return np.where(self._sorted[at] == keys, self._order[at], -1)

    def __len__(self) -> int:
        return self._used

    def update(self, keys: np.ndarray, ts: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count a batch of (key, time, weight) observations."""
        if len(keys) == 0:
            return
        ts = np.asarray(ts, dtype=np.float64)
        t0, t1 = float(ts.min()), float(ts.max())
        w = np.exp2((ts - t1) / self.half_life_s) * (1.0 if weights is None else weights)
        uniq, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
        self.update_sums(uniq, np.bincount(inverse, weights=w), t1, t0, t1)

    def update_sums(self, uniq: np.ndarray, sums: np.ndarray, t_sums: float, t_min: float,
                    t_max: float) -> None:
        """Count a batch given as distinct keys and their weights decayed to time ``t_sums``
        (``sum w * 2**((t - t_sums) / half_life)``), observed between ``t_min`` and ``t_max``:
        one aggregation serves every sketch that counts the same events."""
        if len(uniq) == 0:
            return
        if self._used == 0 and self.t_ref == 0.0:
            self.t_ref = t_min
        if (t_max - self.t_ref) / self.half_life_s > _RESCALE_EXPONENT:
            self.counts *= np.exp2((self.t_ref - t_max) / self.half_life_s)
            self.t_ref = t_max
        sums = sums * np.exp2((t_sums - self.t_ref) / self.half_life_s)
        slots = self._slots(uniq)
        known = slots >= 0
        self.counts[slots[known]] += sums[known]
        new_keys = uniq[~known]
        new_w = sums[~known]
        if len(new_keys) == 0:
            return
        free = self.capacity - self._used
        take = min(free, len(new_keys))
        if take:
            target = np.arange(self._used, self._used + take)
            self.keys[target] = new_keys[:take]
            self.counts[target] = new_w[:take]
            self._used += take
        rest_keys, rest_w = new_keys[take:], new_w[take:]
        if len(rest_keys) == 0:
            self._index()
            return
        # Space-Saving, one batch at a time: an untracked key may already have had up to the
        # smallest tracked count, so each newcomer enters with that floor plus its weight, and the
        # heaviest ``capacity`` of old and new counters stay. Newcomers compete with each other
        # too (as they would one event at a time): a batch with more new keys than small
        # counters must not push out a heavy hitter.
        cap = self.capacity
        floor = float(self.counts.min())
        candidates = np.concatenate([self.counts, rest_w + floor])
        keep = np.argpartition(-candidates, cap - 1)[:cap]
        admitted = keep[keep >= cap] - cap
        if len(admitted) == 0:
            if take:
                self._index()
            return
        evicted = np.setdiff1d(np.arange(cap), keep[keep < cap], assume_unique=True)
        self.keys[evicted] = rest_keys[admitted]
        self.counts[evicted] = rest_w[admitted] + floor
        self._index()

    def top(self, n: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The n heaviest keys and their decayed weights at ``now`` (default: t_ref)."""
        used = self._used
        if used == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        n = min(n, used)
        counts = self.counts[:used]
        idx = np.argpartition(-counts, n - 1)[:n] if n < used else np.arange(used)
        idx = idx[np.argsort(-counts[idx], kind="stable")]
        factor = 1.0 if now is None else float(np.exp2((self.t_ref - now) / self.half_life_s))
        return self.keys[idx].copy(), counts[idx] * factor

    def state(self) -> dict:
        return {"capacity": self.capacity, "half_life_s": self.half_life_s, "t_ref": self.t_ref,
                "keys": self.keys[: self._used].copy(), "counts": self.counts[: self._used].copy()}

    @classmethod
    def from_state(cls, state: dict) -> DecayedTopK:
        s = cls(int(state["capacity"]), float(state["half_life_s"]), float(state["t_ref"]))
        n = len(state["keys"])
        s.keys[:n] = state["keys"]
        s.counts[:n] = state["counts"]
        s._used = n
        s._index()
        return s


class Popularity:
    """"Popular now", overall and per item category, from one stream."""

    def __init__(self, capacity: int, half_life_s: float) -> None:
        self.capacity = capacity
        self.half_life_s = half_life_s
        self.overall = DecayedTopK(capacity, half_life_s)
        self.by_category: dict[str, DecayedTopK] = {}

    def update(self, rows: np.ndarray, ts: np.ndarray, weights: np.ndarray,
               categories: np.ndarray | None = None, names: list[str] | None = None) -> None:
        """Count a batch; ``categories`` holds a category index per event (-1: none), the same
        for every event of one item (an item's category), so the per-item sums of the overall
        sketch are split by category instead of aggregated again per category."""
        if len(rows) == 0:
            return
        ts = np.asarray(ts, dtype=np.float64)
        t0, t1 = float(ts.min()), float(ts.max())
        w = np.exp2((ts - t1) / self.half_life_s) * weights
        uniq, first, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_index=True,
                                         return_inverse=True)
        sums = np.bincount(inverse, weights=w)
        self.overall.update_sums(uniq, sums, t1, t0, t1)
        if categories is None or names is None:
            return
        cat = np.asarray(categories)[first]
        has = np.flatnonzero(cat >= 0)
        if not len(has):
            return
        # One stable sort by category, then a slice per category (items in row order).
        order = has[np.argsort(cat[has], kind="stable")]
        cats = cat[order]
        bounds = np.flatnonzero(np.diff(cats)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(cats)]
        for c, a, b in zip(cats[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            sketch = self.by_category.get(names[c])
            if sketch is None:
                sketch = DecayedTopK(max(10, self.capacity // 4), self.half_life_s)
                self.by_category[names[c]] = sketch
            sel = order[a:b]
            sketch.update_sums(uniq[sel], sums[sel], t1, t0, t1)

    def top(self, n: int, category: str | None = None,
            now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        sketch = self.overall if category is None else self.by_category.get(category)
        if sketch is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return sketch.top(n, now)

    def state(self) -> dict:
        return {"capacity": self.capacity, "half_life_s": self.half_life_s,
                "overall": self.overall.state(),
                "by_category": {k: v.state() for k, v in self.by_category.items()}}

    @classmethod
    def from_state(cls, state: dict) -> Popularity:
        p = cls(int(state["capacity"]), float(state["half_life_s"]))
        p.overall = DecayedTopK.from_state(state["overall"])
        p.by_category = {k: DecayedTopK.from_state(v) for k, v in state["by_category"].items()}
        return p
