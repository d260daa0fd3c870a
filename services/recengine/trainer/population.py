"""The prequential evaluation of a population of rankings in one compiled pass (numba).

Each evaluated event is scored by every ranking of the self-tuning population
(:mod:`recengine.tuning`) from the same gathered state — the user's MF candidates, their recent
items' neighbours, the popularity rankings — so a population of eight costs eight cheap sums
over a few thousand cells, not eight evaluations. A ranking's hit needs no sorted top-k: it is
whether fewer than k items beat the true item under :mod:`recengine.ranking`'s order (score,
then lower row; unscored items after all scored ones, lower row first), which is one pass over
the candidate items. The same pass gives the popularity baselines (the first k popular items
the user has not consumed).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recengine.cooc import ItemNeighbours
from recengine.ranking import RankingParams


@njit(cache=True, nogil=True)
def _hits(mf_top: np.ndarray, mf_ok: np.ndarray, ex_ptr: np.ndarray, ex_cols: np.ndarray,
          recent: np.ndarray, store_nb: np.ndarray, store_w: np.ndarray, store_err: np.ndarray,
          row_pow: np.ndarray, nb_pow: np.ndarray, pops: np.ndarray, decay: np.ndarray,
          used: np.ndarray, blend: np.ndarray, pop_blend: np.ndarray, pop_src: np.ndarray,
          pop_depth: np.ndarray, candidates: int, k: int, n: int, truth: np.ndarray,
          hits: np.ndarray, base_hits: np.ndarray) -> None:
    b, m = mf_top.shape
    length, width = recent.shape[1], store_nb.shape[1]
    nb_ids = np.full((length, width), -1, dtype=np.int64)
    nb_w = np.zeros((length, width), dtype=np.float64)
    n_src, depth = pops.shape
    n_cfg = len(decay)
    excl = np.zeros(n, dtype=np.int64)  # excl[c] == u + 1: c is excluded for user u
    mf_at = np.zeros(n, dtype=np.int64)  # mf_at[c] == u + 1: c is an MF candidate of u
    mf_pos = np.zeros(n, dtype=np.int64)
    pop_at = np.zeros((n_src, n), dtype=np.int64)
    pop_pos = np.zeros((n_src, n), dtype=np.int64)
    max_depth = max(k, pop_depth.max()) if len(pop_depth) else k
    pop_list = np.empty((n_src, max_depth), dtype=np.int64)
    pop_len = np.zeros(n_src, dtype=np.int64)
    mf_list = np.empty(m, dtype=np.int64)
    acc = np.zeros(n, dtype=np.float64)
    seen = np.zeros(n, dtype=np.int64)  # seen[c] == stamp: c already counted in this pass
    touched = np.empty(length * width, dtype=np.int64)
    stamp = 0
    for u in range(b):
        tag = u + 1
        t = truth[u]
        ex_below = 0
        for e in range(ex_ptr[u], ex_ptr[u + 1]):
            c = ex_cols[e]
            if excl[c] != tag:
                excl[c] = tag
                if c < t:
                    ex_below += 1
        truth_ok = t >= 0 and excl[t] != tag
        # The user's recent items' neighbours, read as ItemNeighbours.normalised reads them
        # (the lower bound w - err over the two counts' powers, rounded to float32 as the
        # published table is), once for every ranking of the population.
        if truth_ok:
            for p in range(length):
                r = recent[u, p]
                for q in range(width):
                    nb_ids[p, q] = -1
                    nb_w[p, q] = 0.0
                    if r < 0:
                        continue
                    c = store_nb[r, q]
                    x = store_w[r, q] - store_err[r, q]  # float32, as normalised() subtracts
                    if c < 0 or x <= 0:
                        continue
                    v = np.float64(np.float32(min(np.float64(x) / (row_pow[r] * nb_pow[c]),
                                                  1e30)))
                    if v > 0:
                        nb_ids[p, q] = c
                        nb_w[p, q] = v
        n_mf = 0
        for r in range(m):
            c = mf_top[u, r]
            if mf_ok[u, r] and excl[c] != tag and n_mf < candidates:
                mf_at[c] = tag
                mf_pos[c] = n_mf
                mf_list[n_mf] = c
                n_mf += 1
        for s in range(n_src):
            shown = 0
            hit = 0
            for r in range(depth):
                c = pops[s, r]
                if c < 0 or shown >= max_depth:
                    break
                if excl[c] == tag:
                    continue
                if c == t and shown < k:
                    hit = 1
                pop_at[s, c] = tag
                pop_pos[s, c] = shown
                pop_list[s, shown] = c
                shown += 1
            pop_len[s] = shown
            base_hits[u, s] = hit if truth_ok else 0
        if not truth_ok:
            for j in range(n_cfg):
                hits[u, j] = 0
            continue
        for j in range(n_cfg):
            src = pop_src[j]
            fb, fp = blend[j], pop_blend[j]
            depth_j = min(pop_depth[j], pop_len[src])
            # Item-to-item sums over the touched cells.
            n_touched = 0
            w = 1.0
            for p in range(min(used[j], length)):
                if p > 0:
                    w *= decay[j]
                for q in range(width):
                    c = nb_ids[p, q]
                    if c < 0:
                        continue
                    if acc[c] == 0.0:
                        touched[n_touched] = c
                        n_touched += 1
                    acc[c] += w * nb_w[p, q]
            # The true item's score, then how many scored items beat it.
            st = acc[t]
            if fb > 0 and mf_at[t] == tag:
                st += fb * (1.0 - mf_pos[t] / candidates)
            if fp > 0 and pop_at[src, t] == tag and pop_pos[src, t] < depth_j:
                st += fp * (1.0 - pop_pos[src, t] / pop_depth[j])
            stamp += 1
            better = 0
            scored = 0
            scored_below = 0
            # Counting stops as soon as k items are known to rank above the true one (most
            # events are misses): popular items first, whose bonus alone often beats a weak
            # true item, then the model's, then the item-to-item ones.
            for phase in range(3):
                if (st > 0 and better >= k) or (st <= 0 and scored >= k):
                    break
                if phase == 0:
                    count = depth_j if fp > 0 else 0
                elif phase == 1:
                    count = n_mf if fb > 0 else 0
                else:
                    count = n_touched
                for e in range(count):
                    if phase == 0:
                        c = pop_list[src, e]
                    elif phase == 1:
                        c = mf_list[e]
                    else:
                        c = touched[e]
                    if seen[c] == stamp or excl[c] == tag:
                        continue
                    seen[c] = stamp
                    v = acc[c]
                    if fb > 0 and mf_at[c] == tag:
                        v += fb * (1.0 - mf_pos[c] / candidates)
                    if fp > 0 and pop_at[src, c] == tag and pop_pos[src, c] < depth_j:
                        v += fp * (1.0 - pop_pos[src, c] / pop_depth[j])
                    if v <= 0:
                        continue
                    scored += 1
                    if c < t:
                        scored_below += 1
                    if c != t and (v > st or (v == st and c < t)):
                        better += 1
                        if st > 0 and better >= k:
                            break
                    if st <= 0 and scored >= k:
                        break
            # Unscored: after every scored item, then by row.
            rank = better if st > 0 else scored + (t - ex_below - scored_below)
            hits[u, j] = 1 if rank < k else 0
            for e in range(n_touched):
                acc[touched[e]] = 0.0


def population_hits(mf_top: np.ndarray | None, mf_ok: np.ndarray | None, recent: np.ndarray,
                    neighbours: ItemNeighbours, excl_rows: np.ndarray, excl_cols: np.ndarray,
                    pops: np.ndarray, population: list[RankingParams], candidates: int, k: int,
                    truth: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Whether each of b events' ``truth`` item (-1: a miss) is in the top k of every ranking
    of ``population`` (b, C), and of the first k items of each popularity ranking in ``pops``
    (S, depth; -1 padded) that the user has not consumed (b, S). ``pops`` must be deep enough
    for every ranking's ``pop_depth`` items after the user's exclusions.

    ``mf_top`` (b, M) are the users' best items by the model after their exclusions, best
    first (:func:`recengine.ranking.top_rows`), with ``mf_ok`` false where a slot is empty; or
    ``None`` when no ranking of the population weighs the model. ``recent`` (b, L) are the
    users' recent item rows, newest first, whose neighbours are read from ``neighbours``; the
    excluded (user, item) cells are given as index pairs."""
    b = len(truth)
    n = n_items
    hits = np.zeros((b, len(population)), dtype=np.int8)
    base = np.zeros((b, len(pops)), dtype=np.int8)
    if b == 0:
        return hits, base
    if mf_top is None or mf_ok is None:
        top, ok = np.zeros((b, 0), dtype=np.int64), np.zeros((b, 0), dtype=np.bool_)
    else:
        top, ok = mf_top, mf_ok
    order = np.argsort(excl_rows, kind="stable")
    ex_rows = excl_rows[order]
    ex_cols = np.ascontiguousarray(excl_cols[order], dtype=np.int64)
    ex_ptr = np.searchsorted(ex_rows, np.arange(b + 1)).astype(np.int64)
    row_pow, nb_pow = neighbours.count_powers()
    cfg = population
    _hits(np.ascontiguousarray(top, dtype=np.int64), ok, ex_ptr, ex_cols,
          np.ascontiguousarray(recent, dtype=np.int64), neighbours.nb, neighbours.w,
          neighbours.err, row_pow, nb_pow, np.ascontiguousarray(pops, dtype=np.int64),
          np.array([p.recency_decay for p in cfg], dtype=np.float64),
          np.array([p.recent_used for p in cfg], dtype=np.int64),
          np.array([p.blend for p in cfg], dtype=np.float64),
          np.array([p.pop_blend for p in cfg], dtype=np.float64),
          np.array([_source(p.pop_source) for p in cfg], dtype=np.int64),
          np.array([p.pop_depth for p in cfg], dtype=np.int64),
          int(candidates), int(k), n, np.ascontiguousarray(truth, dtype=np.int64), hits, base)
    return hits, base


def _source(name: str) -> int:
    return 0 if name == "all" else 1
