"""Time-decayed popularity from the stream: a weighted Space-Saving heavy-hitters sketch.

Counts use forward decay: an event at time t adds ``w * 2**((t - t_ref) / half_life)``, so old
counts never need touching; ``t_ref`` moves forward (rescaling every counter once) before the
exponent grows large. A count read at time ``now`` is ``c * 2**((t_ref - now) / half_life)``.

Time here is the trainer's *event clock* (the number of events learned before), not the
events' own timestamps: real streams run at rates that differ by orders of magnitude (events
seconds or days apart), so a half-life in seconds suits one stream and is wrong for the next,
while a half-life in events means the same on every stream. A client's timestamp also cannot
move the reference (an event dated in the year 5138 would otherwise decay every later weight
to zero).
Memory is fixed (``capacity`` counters) whatever the catalogue size; the top entries are the
heavy hitters with Space-Saving's guarantee (an item whose decayed weight exceeds
total/capacity is always kept).
"""

from __future__ import annotations

import numpy as np

_RESCALE_EXPONENT = 40.0


class DecayedTopK:
    """Weighted Space-Saving over integer keys with exponential time decay."""

    def __init__(self, capacity: int, half_life: float, t_ref: float = 0.0) -> None:
        if capacity < 1 or half_life <= 0:
            raise ValueError("capacity and half_life must be positive")
        self.capacity = capacity
        self.half_life = half_life
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
        w = np.exp2((ts - t1) / self.half_life) * (1.0 if weights is None else weights)
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
        if (t_max - self.t_ref) / self.half_life > _RESCALE_EXPONENT:
            self.counts *= np.exp2((self.t_ref - t_max) / self.half_life)
            self.t_ref = t_max
        sums = sums * np.exp2((t_sums - self.t_ref) / self.half_life)
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
        factor = 1.0 if now is None else float(np.exp2((self.t_ref - now) / self.half_life))
        return self.keys[idx].copy(), counts[idx] * factor

    def state(self) -> dict:
        return {"capacity": self.capacity, "half_life": self.half_life, "t_ref": self.t_ref,
                "keys": self.keys[: self._used].copy(), "counts": self.counts[: self._used].copy()}

    @classmethod
    def from_state(cls, state: dict) -> DecayedTopK:
        s = cls(int(state["capacity"]), float(state["half_life"]), float(state["t_ref"]))
        n = len(state["keys"])
        s.keys[:n] = state["keys"]
        s.counts[:n] = state["counts"]
        s._used = n
        s._index()
        return s


class Popularity:
    """"Popular now", overall and per item category, from one stream."""

    def __init__(self, capacity: int, half_life: float) -> None:
        self.capacity = capacity
        self.half_life = half_life
        self.overall = DecayedTopK(capacity, half_life)
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
        w = np.exp2((ts - t1) / self.half_life) * weights
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
                sketch = DecayedTopK(max(10, self.capacity // 4), self.half_life)
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
        return {"capacity": self.capacity, "half_life": self.half_life,
                "overall": self.overall.state(),
                "by_category": {k: v.state() for k, v in self.by_category.items()}}

    @classmethod
    def from_state(cls, state: dict) -> Popularity:
        p = cls(int(state["capacity"]), float(state["half_life"]))
        p.overall = DecayedTopK.from_state(state["overall"])
        p.by_category = {k: DecayedTopK.from_state(v) for k, v in state["by_category"].items()}
        return p


class ItemCounts:
    """Exact per-item counts, all-time and decayed on the event clock, for the popularity
    baselines and the popularity bonus of the ranking (dense: 16 bytes per item).

    Plain all-time popularity is the strongest simple baseline on many real streams; the
    decayed count wins where tastes move. Both are kept, and every quality figure is compared
    with the stronger one."""

    def __init__(self, half_life: float, capacity: int = 1024) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.half_life = half_life
        self.t_ref = 0.0
        self.total = np.zeros(capacity, dtype=np.float64)
        self.decayed = np.zeros(capacity, dtype=np.float64)

    def ensure(self, n_items: int, growth: float = 0.1) -> None:
        if n_items > len(self.total):
            cap = max(n_items, int(len(self.total) * (1 + growth)) + 1)
            for name in ("total", "decayed"):
                grown = np.zeros(cap, dtype=np.float64)
                old = getattr(self, name)
                grown[: len(old)] = old
                setattr(self, name, grown)

    def update(self, rows: np.ndarray, clock: np.ndarray) -> None:
        """Count a batch of events of item ``rows`` at event-clock times ``clock``."""
        if len(rows) == 0:
            return
        t_max = float(clock[-1])
        if (t_max - self.t_ref) / self.half_life > _RESCALE_EXPONENT:
            self.decayed *= np.exp2((self.t_ref - t_max) / self.half_life)
            self.t_ref = t_max
        n = len(self.total)
        self.total += np.bincount(rows, minlength=n)[:n]
        w = np.exp2((np.asarray(clock, dtype=np.float64) - self.t_ref) / self.half_life)
        self.decayed += np.bincount(rows, weights=w, minlength=n)[:n]

    def ranking(self, source: str, n_items: int, depth: int) -> np.ndarray:
        """The ``depth`` most popular item rows by ``source`` (``all`` or ``decayed``), most
        popular first, ties to the lower row; only items counted at least once."""
        counts = (self.total if source == "all" else self.decayed)[:n_items]
        depth = min(depth, n_items)
        if depth <= 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-counts, depth - 1)[:depth] if depth < n_items else np.arange(
            n_items)
        top = top[np.lexsort((top, -counts[top]))]
        return top[counts[top] > 0].astype(np.int64)

    def state(self, n_items: int) -> dict:
        return {"half_life": self.half_life, "t_ref": self.t_ref,
                "total": self.total[:n_items].copy(), "decayed": self.decayed[:n_items].copy()}

    @classmethod
    def from_state(cls, state: dict) -> ItemCounts:
        c = cls(float(state["half_life"]), max(1, len(state["total"])))
        c.t_ref = float(state["t_ref"])
        c.total[: len(state["total"])] = state["total"]
        c.decayed[: len(state["decayed"])] = state["decayed"]
        return c
