"""The item-to-item signal: each user's last items, and co-occurrence learned from the stream.

When a user consumes item j after recent items r_0 (newest) … r_{L-1}, the pair (r_p, j) gains
``weight * recency_decay**p`` in both directions. Each item keeps its ``K`` strongest neighbours
in a per-row weighted Space-Saving sketch, so memory is ``items x K`` whatever the stream length.
Weights decay with a half-life (lazily, per row, when the row is touched) and are read
cosine-normalised: ``C[i, j] / sqrt(n_i * n_j)`` with ``n`` the decayed item counts. Every update
is vectorised over a micro-batch round in which each user appears at most once.
"""

from __future__ import annotations

import numpy as np


def _grown(a: np.ndarray, rows: int, fill: float | int) -> np.ndarray:
    out = np.full((rows, *a.shape[1:]), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class RecentItems:
    """Per-user ring of the last L item rows and their times, newest first."""

    def __init__(self, length: int, capacity: int = 1024) -> None:
        self.length = length
        self.rows = np.full((capacity, length), -1, dtype=np.int64)
        self.ts = np.zeros((capacity, length), dtype=np.float64)

    def ensure(self, n_users: int, growth: float = 0.1) -> None:
        if n_users > len(self.rows):
            cap = max(n_users, int(len(self.rows) * (1 + growth)) + 1)
            self.rows = _grown(self.rows, cap, -1)
            self.ts = _grown(self.ts, cap, 0.0)

    def get(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rows[users], self.ts[users]

    def push(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> None:
        """Prepend one item per user; ``users`` must be unique in one call."""
        self.rows[users, 1:] = self.rows[users, :-1]
        self.ts[users, 1:] = self.ts[users, :-1]
        self.rows[users, 0] = items
        self.ts[users, 0] = ts

    def state(self, n_users: int) -> dict:
        return {"length": self.length, "rows": self.rows[:n_users].copy(),
                "ts": self.ts[:n_users].copy()}

    @classmethod
    def from_state(cls, state: dict) -> RecentItems:
        r = cls(int(state["length"]), max(1, len(state["rows"])))
        r.ensure(len(state["rows"]))
        r.rows[: len(state["rows"])] = state["rows"]
        r.ts[: len(state["ts"])] = state["ts"]
        return r


class ItemNeighbours:
    """Top-K co-occurring items per item, time-decayed, with decayed item counts."""

    def __init__(self, k: int, half_life_s: float, recency_decay: float,
                 capacity: int = 1024) -> None:
        self.k = k
        self.half_life_s = half_life_s
        self.recency_decay = recency_decay
        self.nb = np.full((capacity, k), -1, dtype=np.int64)
        self.w = np.zeros((capacity, k), dtype=np.float32)
        self.row_t = np.zeros(capacity, dtype=np.float64)
        self.cnt = np.zeros(capacity, dtype=np.float64)
        self.cnt_t = np.zeros(capacity, dtype=np.float64)

    def ensure(self, n_items: int, growth: float = 0.1) -> None:
        if n_items > len(self.nb):
            cap = max(n_items, int(len(self.nb) * (1 + growth)) + 1)
            self.nb = _grown(self.nb, cap, -1)
            self.w = _grown(self.w, cap, 0.0)
            self.row_t = _grown(self.row_t, cap, 0.0)
            self.cnt = _grown(self.cnt, cap, 0.0)
            self.cnt_t = _grown(self.cnt_t, cap, 0.0)

    def _decay(self, t: np.ndarray | float, since: np.ndarray) -> np.ndarray:
        return np.exp2(-np.maximum(np.asarray(t) - since, 0.0) / self.half_life_s)

    def update(self, prev_rows: np.ndarray, items: np.ndarray, ts: np.ndarray,
               weights: np.ndarray) -> None:
        """Learn from one round: ``prev_rows[b]`` are user b's recent items before ``items[b]``."""
        if len(items) == 0:
            return
        now = float(ts.max())
        uniq_items = np.unique(items)
        self.cnt[uniq_items] *= self._decay(now, self.cnt_t[uniq_items])
        self.cnt_t[uniq_items] = now
        np.add.at(self.cnt, items, weights.astype(np.float64))
        L = prev_rows.shape[1]
        pos_w = self.recency_decay ** np.arange(L, dtype=np.float64)
        valid = (prev_rows >= 0) & (prev_rows != items[:, None])
        if not valid.any():
            return
        b_idx, p_idx = np.nonzero(valid)
        a = prev_rows[b_idx, p_idx]
        b = items[b_idx]
        pw = weights[b_idx].astype(np.float64) * pos_w[p_idx]
        src = np.concatenate([a, b])
        dst = np.concatenate([b, a])
        pw = np.concatenate([pw, pw])
        cap = np.int64(len(self.nb))
        keys, inverse = np.unique(src * cap + dst, return_inverse=True)
        add = np.bincount(inverse, weights=pw).astype(np.float32)
        src, dst = keys // cap, keys % cap
        rows = np.unique(src)
        self.w[rows] *= self._decay(now, self.row_t[rows])[:, None].astype(np.float32)
        self.row_t[rows] = now
        match = self.nb[src] == dst[:, None]
        has = match.any(axis=1)
        slot = match.argmax(axis=1)
        self.w[src[has], slot[has]] += add[has]
        src, dst, add = src[~has], dst[~has], add[~has]
        if len(src) == 0:
            return
        # Newcomers: each row admits its strongest K candidates, one per row per step, each
        # taking the row's weakest slot and inheriting its weight (Space-Saving).
        order = np.lexsort((-add, src))
        src, dst, add = src[order], dst[order], add[order]
        starts = np.r_[0, np.flatnonzero(np.diff(src)) + 1]
        rank = np.arange(len(src)) - np.repeat(starts, np.diff(np.r_[starts, len(src)]))
        for r in range(min(int(rank.max()) + 1, self.k)):
            sel = rank == r
            s, d, w = src[sel], dst[sel], add[sel]
            victim = self.w[s].argmin(axis=1)
            self.nb[s, victim] = d
            self.w[s, victim] += w

    def normalised(self, rows: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour ids and cosine-normalised weights of ``rows`` (any shape) at time ``now``."""
        flat = rows.reshape(-1)
        safe = np.where(flat >= 0, flat, 0)
        nb = self.nb[safe]
        w = self.w[safe].astype(np.float64) * self._decay(now, self.row_t[safe])[:, None]
        cnt_rows = self.cnt[safe] * self._decay(now, self.cnt_t[safe])
        nb_safe = np.where(nb >= 0, nb, 0)
        cnt_nb = self.cnt[nb_safe] * self._decay(now, self.cnt_t[nb_safe])
        denom = np.sqrt(np.maximum(cnt_rows[:, None] * cnt_nb, 1e-12))
        out = np.where((nb >= 0) & (flat[:, None] >= 0), w / denom, 0.0).astype(np.float32)
        nb = np.where(out > 0, nb, -1)
        return nb.reshape(*rows.shape, self.k), out.reshape(*rows.shape, self.k)

    def table(self, n_items: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """The whole normalised neighbour table for publishing, strongest neighbour first."""
        nb, w = self.normalised(np.arange(n_items), now)
        order = np.argsort(-w, axis=1, kind="stable")
        return (np.take_along_axis(nb, order, 1).astype(np.int32),
                np.take_along_axis(w, order, 1))

    def state(self, n_items: int) -> dict:
        return {"k": self.k, "half_life_s": self.half_life_s,
                "recency_decay": self.recency_decay,
                "nb": self.nb[:n_items].copy(), "w": self.w[:n_items].copy(),
                "row_t": self.row_t[:n_items].copy(), "cnt": self.cnt[:n_items].copy(),
                "cnt_t": self.cnt_t[:n_items].copy()}

    @classmethod
    def from_state(cls, state: dict) -> ItemNeighbours:
        n = len(state["nb"])
        x = cls(int(state["k"]), float(state["half_life_s"]), float(state["recency_decay"]),
                max(1, n))
        for name in ("nb", "w", "row_t", "cnt", "cnt_t"):
            getattr(x, name)[:n] = state[name]
        return x
