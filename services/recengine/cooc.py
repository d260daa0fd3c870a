"""The item-to-item signal: each user's last items, and co-occurrence learned from the stream.

When a user consumes item j after recent items r_0 (newest) … r_{L-1}, the pair (r_p, j) gains
``weight * pair_decay**p`` in both directions. Each item keeps its ``K`` strongest neighbours
in a per-row weighted Space-Saving sketch, so memory is ``items x K`` whatever the stream length.
Weights decay with a half-life on the trainer's event clock (forward decay: old weights are
never touched; see :mod:`recengine.popularity` for why events, not seconds) and are read
cosine-normalised: ``C[i, j] / sqrt(n_i * n_j)`` with ``n`` the decayed item counts.

Space-Saving runs once per micro-batch and row, not once per pair: a batch's pairs are summed
first, and a row admits its newcomers against its weights as they were before the batch. (The
classic one-pair-at-a-time step lets every newcomer in at the row's rising minimum; with the
churn of a real stream that inflated noise pairs and cut recall@10 on the generated stream from
0.217 to 0.162.) The whole batch update is one compiled pass (numba): pairs are grouped by row
with a counting sort and summed per neighbour through a scratch index, then merged. It replaced
numpy sorts, a vectorised binary search per pair and two row sorts per batch (1.1 us per event;
this is a fraction of that).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _before(key: np.ndarray, a: int, b: int, sign: float) -> bool:
    """Heap order: ``sign * key`` ascending, ties to the lower index (as a stable sort)."""
    ka, kb = sign * key[a], sign * key[b]
    return ka < kb or (ka == kb and a < b)


@njit(cache=True, nogil=True)
def _sift_down(heap: np.ndarray, key: np.ndarray, size: int, at: int, sign: float) -> None:
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _before(key, heap[child + 1], heap[child], sign):
            child += 1
        if not _before(key, heap[child], heap[at], sign):
            return
        heap[at], heap[child] = heap[child], heap[at]
        at = child


@njit(cache=True, nogil=True)
def _heapify(heap: np.ndarray, key: np.ndarray, size: int, sign: float) -> None:
    for at in range(size // 2 - 1, -1, -1):
        _sift_down(heap, key, size, at, sign)


@njit(cache=True, nogil=True)
def _pop(heap: np.ndarray, key: np.ndarray, size: int, sign: float) -> int:
    """Drop the root; returns the new size."""
    size -= 1
    heap[0] = heap[size]
    _sift_down(heap, key, size, 0, sign)
    return size


@njit(cache=True, nogil=True)
def _update_rows(nb: np.ndarray, w: np.ndarray, err: np.ndarray, prev_rows: np.ndarray,
                 items: np.ndarray, ew: np.ndarray, pos_w: np.ndarray, backward: float) -> None:
    """One batch of Space-Saving per row. Event b pairs items[b] with each of its recent items
    a = prev_rows[b, p] (not empty, not itself) with weight ``ew[b] * pos_w[p]``, in both
    directions. Per row: the batch's weights of each neighbour are summed (float64, then
    float32); tracked neighbours gain theirs; then the r-th heaviest newcomer replaces the
    row's r-th weakest slot when the row's floor (its weakest weight: what an untracked
    neighbour may already have had) plus its weight is heavier than that slot."""
    rows, k = nb.shape
    n, length = prev_rows.shape
    # The batch's pairs, then the directed pairs grouped by row: a counting sort (rows in
    # first-seen order).
    pair_a = np.empty(n * length, dtype=np.int64)
    pair_j = np.empty(n * length, dtype=np.int64)
    pair_x = np.empty(n * length, dtype=np.float64)
    pairs = 0
    for b in range(n):
        for p in range(length):
            a = prev_rows[b, p]
            if a >= 0 and a != items[b]:
                pair_a[pairs], pair_j[pairs], pair_x[pairs] = a, items[b], ew[b] * pos_w[p]
                pairs += 1
    count = np.zeros(rows, dtype=np.int64)
    touched = np.empty(2 * pairs, dtype=np.int64)
    n_touched = 0
    for e in range(pairs):
        for r in (pair_a[e], pair_j[e]):
            if count[r] == 0:
                touched[n_touched] = r
                n_touched += 1
            count[r] += 1
    start = np.empty(rows, dtype=np.int64)
    total = 0
    for t in range(n_touched):
        r = touched[t]
        start[r] = total
        total += count[r]
    fill = start.copy()
    dst = np.empty(total, dtype=np.int64)
    add = np.empty(total, dtype=np.float64)
    for e in range(pairs):
        a, j, x = pair_a[e], pair_j[e], pair_x[e]
        dst[fill[a]], add[fill[a]] = j, x
        fill[a] += 1
        dst[fill[j]], add[fill[j]] = a, x * backward
        fill[j] += 1
    stamp = np.zeros(rows, dtype=np.int64)  # stamp[c] == row + 1: c seen in this row's pairs
    slot_of = np.empty(rows, dtype=np.int64)
    held = np.zeros(rows, dtype=np.int64)  # held[c] == row + 1: c is tracked in row's slots
    held_at = np.empty(rows, dtype=np.int64)
    uniq = np.empty(total, dtype=np.int64)
    sums = np.empty(total, dtype=np.float64)
    new_ids = np.empty(total, dtype=np.int64)
    new_w = np.empty(total, dtype=np.float32)
    slots = np.empty(k, dtype=np.int64)
    comers = np.empty(total, dtype=np.int64)
    for t in range(n_touched):
        row = touched[t]
        m = 0
        for e in range(start[row], start[row] + count[row]):
            c = dst[e]
            if stamp[c] != row + 1:
                stamp[c] = row + 1
                slot_of[c] = m
                uniq[m] = c
                sums[m] = add[e]
                m += 1
            else:
                sums[slot_of[c]] += add[e]
        # The row's tracked neighbours, indexed once (O(K)), so each of its m neighbours in
        # this batch is found in O(1), not by a scan of K slots (O(m K): with 20 recent items
        # and 200 neighbours that scan was most of the learner's time).
        for s in range(k):
            c = nb[row, s]
            if c >= 0:
                held[c] = row + 1
                held_at[c] = s
        fresh = 0
        for q in range(m):
            c = uniq[q]
            x = np.float32(sums[q])
            if held[c] == row + 1:
                w[row, held_at[c]] += x
            else:
                new_ids[fresh] = c
                new_w[fresh] = x
                fresh += 1
        if fresh == 0:
            continue
        # Pair the heaviest newcomer with the weakest slot, the next with the next, while the
        # newcomer (plus the floor it may already have had) outweighs the slot: both sides
        # come off heaps, so a row costs O(K + newcomers + replacements * log K), not two
        # sorts (newcomers descend and slots ascend, so the first refusal ends the row).
        for s in range(k):
            slots[s] = s
        _heapify(slots, w[row], k, 1.0)
        for q in range(fresh):
            comers[q] = q
        _heapify(comers, new_w, fresh, -1.0)
        floor = w[row, slots[0]]
        n_slots, n_comers = k, fresh
        while n_slots > 0 and n_comers > 0:
            slot, q = slots[0], comers[0]
            cand = new_w[q] + floor
            if not cand > w[row, slot]:
                break
            nb[row, slot] = new_ids[q]
            n_slots = _pop(slots, w[row], n_slots, 1.0)
            n_comers = _pop(comers, new_w, n_comers, -1.0)
            w[row, slot] = cand
            err[row, slot] = floor


@njit(cache=True, nogil=True)
def _advance_recent(rows: np.ndarray, times: np.ndarray, users: np.ndarray, items: np.ndarray,
                    ts: np.ndarray, prev: np.ndarray) -> None:
    length = rows.shape[1]
    for e in range(len(users)):
        x = users[e]
        for p in range(length):
            prev[e, p] = rows[x, p]
        for p in range(length - 1, 0, -1):
            rows[x, p] = rows[x, p - 1]
            times[x, p] = times[x, p - 1]
        rows[x, 0] = items[e]
        times[x, 0] = ts[e]


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

    def advance(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Apply a batch of events in stream order; returns each event's user's recent items
        just before it, (n, L) (earlier events of the batch included)."""
        prev = np.empty((len(users), self.length), dtype=np.int64)
        _advance_recent(self.rows, self.ts, np.ascontiguousarray(users, dtype=np.int64),
                        np.ascontiguousarray(items, dtype=np.int64),
                        np.ascontiguousarray(ts, dtype=np.float64), prev)
        return prev

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


#: Forward-decay exponent (in half-lives) after which the reference time moves forward.
_RESCALE_HALF_LIVES = 20.0


class ItemNeighbours:
    """Top-K co-occurring items per item, time-decayed, with decayed item counts.

    Decay is *forward*: a co-occurrence at time t adds ``w * 2**((t - t_ref) / half_life)``, so
    an update never touches old weights, and a read needs no decay at all, because the cosine
    ``C[i, j] / sqrt(n_i * n_j)`` of weights that share one scale factor is that of the decayed
    weights. ``t_ref`` moves forward (rescaling everything once) before the factor grows large.

    Two choices measured on real streams (``docs/quality.md``): the pair (r, j), j consumed
    after r, adds its full weight to row r (what follows r, the direction a recommendation
    reads) and ``backward`` times it to row j; and the read normalises by
    ``n_i**(1 - exponent) * n_j**exponent``: 0.5 is the cosine, a smaller exponent punishes
    popular neighbours less (they are likelier next items, which the cosine forgets). The
    exponents sum to 1, so the decay still cancels out.
    """

    def __init__(self, k: int, half_life: float, pair_decay: float, capacity: int = 1024, *,
                 backward: float = 1.0, exponent: float = 0.5) -> None:
        self.k = k
        self.half_life = half_life
        self.pair_decay = pair_decay
        self.backward = backward
        self.exponent = exponent
        self.t_ref: float | None = None
        self.nb = np.full((capacity, k), -1, dtype=np.int32)
        self.w = np.zeros((capacity, k), dtype=np.float32)
        self.err = np.zeros((capacity, k), dtype=np.float32)
        self._powers: tuple[np.ndarray, np.ndarray] | None = None
        self.cnt = np.zeros(capacity, dtype=np.float64)

    def ensure(self, n_items: int, growth: float = 0.1) -> None:
        if n_items > len(self.nb):
            cap = max(n_items, int(len(self.nb) * (1 + growth)) + 1)
            self.nb = _grown(self.nb, cap, -1)
            self.w = _grown(self.w, cap, 0.0)
            self.err = _grown(self.err, cap, 0.0)
            self.cnt = _grown(self.cnt, cap, 0.0)

    def _scale(self, ts: np.ndarray) -> np.ndarray:
        """Forward-decay factors of times (rescaling everything first when they grew large)."""
        t_max = float(ts.max())
        if self.t_ref is None:
            self.t_ref = float(ts.min())
        elif (t_max - self.t_ref) / self.half_life > _RESCALE_HALF_LIVES:
            f = 2.0 ** ((self.t_ref - t_max) / self.half_life)
            self.w *= np.float32(f)
            self.err *= np.float32(f)
            self.cnt *= f
            self.t_ref = t_max
        return np.exp2((ts - self.t_ref) / self.half_life)

    def count_powers(self) -> tuple[np.ndarray, np.ndarray]:
        """``n**(1 - exponent)`` and ``n**exponent`` of every item's count, computed once per
        update (the evaluation reads neighbours of thousands of rows between two updates)."""
        if self._powers is None or len(self._powers[0]) != len(self.cnt):
            cnt = np.maximum(self.cnt, 1e-30)
            self._powers = (cnt ** (1.0 - self.exponent), cnt ** self.exponent)
        return self._powers

    def update(self, prev_rows: np.ndarray, items: np.ndarray, ts: np.ndarray,
               weights: np.ndarray) -> None:
        """Learn from one round: ``prev_rows[b]`` are user b's recent items before ``items[b]``."""
        if len(items) == 0:
            return
        self._powers = None
        ew = weights.astype(np.float64) * self._scale(np.asarray(ts, dtype=np.float64))
        uniq_items, inv = np.unique(items, return_inverse=True)
        self.cnt[uniq_items] += np.bincount(inv, weights=ew)
        pos_w = self.pair_decay ** np.arange(prev_rows.shape[1], dtype=np.float64)
        _update_rows(self.nb, self.w, self.err, np.ascontiguousarray(prev_rows, dtype=np.int64),
                     np.ascontiguousarray(items, dtype=np.int64), ew, pos_w, self.backward)

    def normalised(self, rows: np.ndarray, now: float | None = None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """Neighbour ids and cosine-normalised weights of ``rows`` (any shape), as of the last
        update (``now`` is accepted for compatibility: decay cancels out of the cosine)."""
        flat = rows.reshape(-1)
        safe = np.where(flat >= 0, flat, 0)
        nb = self.nb[safe]
        nb_safe = np.where(nb >= 0, nb, 0)
        row_pow, nb_pow = self.count_powers()
        denom = row_pow[safe][:, None] * nb_pow[nb_safe]
        # Space-Saving admits a newcomer at the row's floor plus its weight, so a weight may
        # overstate its pair by the floor it entered at: read the lower bound ``w - err``.
        # Without it, a rare item that just entered at the floor has a large cosine (a small
        # count under a borrowed weight), and the noise of the row's churn outranks real
        # neighbours (measured on MovieLens: recall@10 0.062 -> 0.097).
        w = np.maximum(self.w[safe] - self.err[safe], 0.0)
        out = np.where((nb >= 0) & (flat[:, None] >= 0), w / denom, 0.0)
        out = np.minimum(out, 1e30).astype(np.float32)
        nb = np.where(out > 0, nb, -1).astype(np.int64)
        return nb.reshape(*rows.shape, self.k), out.reshape(*rows.shape, self.k)

    def table(self, n_items: int, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The whole normalised neighbour table for publishing, strongest neighbour first."""
        nb, w = self.normalised(np.arange(n_items), now)
        order = np.argsort(-w, axis=1, kind="stable")
        return (np.take_along_axis(nb, order, 1).astype(np.int32),
                np.take_along_axis(w, order, 1))

    def state(self, n_items: int) -> dict:
        return {"k": self.k, "half_life": self.half_life,
                "pair_decay": self.pair_decay, "backward": self.backward,
                "exponent": self.exponent, "t_ref": self.t_ref,
                "nb": self.nb[:n_items].copy(), "w": self.w[:n_items].copy(),
                "err": self.err[:n_items].copy(),
                "cnt": self.cnt[:n_items].copy()}

    @classmethod
    def from_state(cls, state: dict) -> ItemNeighbours:
        n = len(state["nb"])
        x = cls(int(state["k"]), float(state["half_life"]), float(state["pair_decay"]),
                max(1, n), backward=float(state["backward"]),
                exponent=float(state["exponent"]))
        by_id = np.argsort(np.asarray(state["nb"]), axis=1, kind="stable")
        x.nb[:n] = np.take_along_axis(np.asarray(state["nb"]), by_id, 1)
        x.w[:n] = np.take_along_axis(np.asarray(state["w"]), by_id, 1)
        x.err[:n] = np.take_along_axis(np.asarray(state["err"]), by_id, 1)
        x.cnt[:n] = state["cnt"]
        x.t_ref = state.get("t_ref")
        return x
