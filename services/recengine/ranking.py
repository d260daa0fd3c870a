"""How a recommendation is scored: the model's rank blended with the item-to-item signal.

``score(c) = item2item(c) + blend * max(0, 1 - rank_mf(c) / M)``

* ``item2item(c) = sum_p recency_decay**p * cos(r_p, c)`` over the user's recent items ``r_p``
  (newest first), with the cosine-normalised co-occurrence neighbours of each ``r_p``;
* ``rank_mf(c)`` is c's rank (0 = best) among the ``M`` best items by the GMF inner product
  ``<p_u * w, q_c> + b_c`` — exactly what the faiss inner-product index returns — after
  excluding the user's items.

Rank fusion keeps the two signals on one scale without calibrating raw inner products: when the
user's last items have strong neighbours they lead, and the model orders everything else (and
is all there is for a user with no co-occurrence signal). The same formula serves the dense
evaluation (all items, numpy) and the index service (faiss candidates), so a measured recall is
the recall of what is served. Pure numpy: the index service imports this, not torch.
"""

from __future__ import annotations

import numpy as np


def recency_weights(recent_rows: np.ndarray, decay: float) -> np.ndarray:
    """``decay**p`` for the p-th most recent item, 0 where a slot is empty."""
    pos = decay ** np.arange(recent_rows.shape[-1], dtype=np.float32)
    return np.where(recent_rows >= 0, pos, 0.0).astype(np.float32)


def item2item_dense(rec_w: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
                    n_items: int) -> np.ndarray:
    """Item-to-item scores of every item for b users: (b, L) weights, (b, L, K) neighbours."""
    b = rec_w.shape[0]
    contrib = (rec_w[:, :, None] * nb_w).reshape(b, -1)
    ids = nb_ids.reshape(b, -1)
    valid = ids >= 0
    flat = (np.arange(b)[:, None] * n_items + np.where(valid, ids, 0))[valid]
    out = np.bincount(flat, weights=contrib[valid], minlength=b * n_items)
    return out.reshape(b, n_items).astype(np.float32)


def blend_dense(mf: np.ndarray, i2i: np.ndarray, excluded: np.ndarray, blend: float,
                candidates: int, k: int) -> np.ndarray:
    """Top-k item rows per user (b, k) from full score matrices; ``excluded`` is a bool mask."""
    rows, cols = np.nonzero(excluded)
    return blend_dense_pairs(mf, i2i, rows, cols, blend, candidates, k)


def blend_dense_pairs(mf: np.ndarray, i2i: np.ndarray, excl_rows: np.ndarray,
                      excl_cols: np.ndarray, blend: float, candidates: int, k: int, *,
                      overwrite: bool = False) -> np.ndarray:
    """:func:`blend_dense` with the excluded (user, item) cells given as index arrays, which is
    cheaper when a user has seen a few dozen items of thousands. With ``overwrite`` the inputs
    may be used as scratch space (they are then changed)."""
    b, n = mf.shape
    mf = mf if overwrite else mf.copy()
    score = i2i.astype(np.float32, copy=not overwrite)
    mf[excl_rows, excl_cols] = -np.inf
    score[excl_rows, excl_cols] = -np.inf
    m = min(candidates, n)
    if blend > 0 and m > 0:
        # (Partitioning at a small kth of the negated scores: numpy's introselect is very slow
        # at a kth near the end of rows full of equal values.)
        top = np.argpartition(-mf, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n),
                                                                               (b, 1))
        vals = np.take_along_axis(mf, top, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        # Rank over ``candidates`` (not over m): the same bonus as ``blend_candidates`` even
        # when the catalogue is smaller than the candidate list. Excluded items get none.
        bonus = (blend * (1.0 - np.arange(m, dtype=np.float32) / candidates))[None, :]
        bonus = np.where(np.isfinite(np.take_along_axis(vals, order, 1)), bonus, 0.0)
        score[np.arange(b)[:, None], top] += bonus.astype(np.float32)
    kk = min(k, n)
    best = np.argpartition(-score, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(
        np.arange(n), (b, 1))
    order = np.argsort(-np.take_along_axis(score, best, 1), axis=1, kind="stable")
    return np.take_along_axis(best, order, 1)


def top_rows(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m best columns of each row (b, m), best first, and their scores."""
    b, n = scores.shape
    top = None
    if m >= n:
        top = np.tile(np.arange(n), (b, 1))
    elif b:
        # The m-th best score of each row (partitioning values is cheaper than indices), then the
        # columns at or above it: exactly m per row unless a row has ties at its threshold.
        thr = np.partition(scores, n - m, axis=1)[:, n - m]
        flat = np.flatnonzero(scores >= thr[:, None])
        if len(flat) == b * m:
            top = (flat % n).reshape(b, m)
    if top is None:
        # (At a small kth of the negated scores: numpy's introselect is very slow at a kth near
        # the end of rows full of equal values.)
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    vals = np.take_along_axis(scores, top, 1)
    order = np.argsort(-vals, axis=1)
    return np.take_along_axis(top, order, 1), np.take_along_axis(vals, order, 1)


def blend_sparse(mf: np.ndarray, rec_w: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
                 excl_rows: np.ndarray, excl_cols: np.ndarray, blend: float, candidates: int,
                 k: int) -> np.ndarray:
    """:func:`blend_dense` for b users from their MF scores (b, n) and their recent items'
    weights (b, L) and neighbours (b, L, K), touching only candidate items.

    Only items among a user's ``candidates`` best by MF or with an item-to-item score can score
    above zero, so the top k is picked among those (a few hundred, not the catalogue); a user
    with fewer than k such items falls back to :func:`blend_dense_pairs`. ``mf`` is used as
    scratch space (it is changed).
    """
    b, n = mf.shape
    kk = min(k, n)
    if b == 0:
        return np.zeros((0, kk), dtype=np.int64)
    mf[excl_rows, excl_cols] = -np.inf
    # Item-to-item score of every (user, neighbour) cell, summed in float64 and read as float32
    # as item2item_dense does (in a b x n scratch: keep b small enough for the CPU caches).
    contrib = (rec_w[:, :, None] * nb_w).reshape(b, -1)
    ids = nb_ids.reshape(b, -1)
    r, c = np.nonzero((ids >= 0) & (contrib > 0))
    flat = r * n + ids[r, c]
    acc = np.zeros(b * n, dtype=np.float64)
    np.add.at(acc, flat, contrib[r, c].astype(np.float64))  # same dtype: the fast path
    owner = np.empty(b * n, dtype=np.int64)  # one cell per (user, item): the last writer's
    owner[flat] = np.arange(len(flat))
    cells = np.sort(flat[owner[flat] == np.arange(len(flat))])
    cell_row, cell_item = cells // n, cells % n
    score = acc.astype(np.float32).reshape(b, n)
    score[excl_rows, excl_cols] = -np.inf
    m = min(candidates, n) if blend > 0 else 0
    rows = np.arange(b)[:, None]
    if m > 0:
        top, vals = top_rows(mf, m)
        bonus = (blend * (1.0 - np.arange(m, dtype=np.float32) / candidates))[None, :]
        top_score = score[rows, top] + np.where(np.isfinite(vals), bonus, 0.0).astype(np.float32)
        score[rows, top] = -np.inf  # their item-to-item part is counted above
    else:
        top = np.zeros((b, 0), dtype=np.int64)
        top_score = np.zeros((b, 0), dtype=np.float32)
    # The other cells, padded to one row per user.
    cell_score = score[cell_row, cell_item]
    first = np.searchsorted(cell_row, np.arange(b))
    pos = np.arange(len(cells)) - first[cell_row]
    width = int(pos.max()) + 1 if len(pos) else 0
    pad_score = np.full((b, width), -np.inf, dtype=np.float32)
    pad_item = np.full((b, width), -1, dtype=np.int64)
    pad_score[cell_row, pos] = cell_score
    pad_item[cell_row, pos] = cell_item
    cand_score = np.concatenate([top_score, pad_score], axis=1)
    cand_item = np.concatenate([top, pad_item], axis=1)
    if cand_score.shape[1] > kk:
        best = np.argpartition(-cand_score, kk - 1, axis=1)[:, :kk]
    else:
        best = np.tile(np.arange(cand_score.shape[1]), (b, 1))
    order = np.argsort(-np.take_along_axis(cand_score, best, 1), axis=1, kind="stable")
    best = np.take_along_axis(best, order, 1)
    out = np.full((b, kk), -1, dtype=np.int64)
    out[:, : best.shape[1]] = np.take_along_axis(cand_item, best, 1)
    short = np.flatnonzero(np.isfinite(cand_score).sum(axis=1) < kk)
    if len(short):  # too few candidates: rank the whole catalogue as blend_dense does
        keep = np.isin(excl_rows, short)
        remap = np.full(b, -1, dtype=np.int64)
        remap[short] = np.arange(len(short))
        i2i = item2item_dense(rec_w[short], nb_ids[short], nb_w[short], n)
        out[short] = blend_dense_pairs(mf[short], i2i, remap[excl_rows[keep]],
                                       excl_cols[keep], blend, candidates, k, overwrite=True)
    return out


def blend_candidates(mf_ids: np.ndarray, i2i_ids: np.ndarray, i2i_scores: np.ndarray,
                     blend: float, candidates: int, k: int,
                     exclude: set[int] | frozenset[int] = frozenset()) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Top-k rows and scores for one query from MF candidates (best first) and i2i scores."""
    mf_ids = np.asarray(mf_ids, dtype=np.int64)
    i2i_ids = np.asarray(i2i_ids, dtype=np.int64)
    i2i_scores = np.asarray(i2i_scores, dtype=np.float64)
    mf_ids = mf_ids[mf_ids >= 0]
    keep = (i2i_ids >= 0) & (i2i_scores > 0)
    if exclude:
        excl = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
        mf_ids = mf_ids[~np.isin(mf_ids, excl)]
        keep &= ~np.isin(i2i_ids, excl)
    mf_ids = mf_ids[:candidates] if blend > 0 else mf_ids[:0]
    bonus = blend * (1.0 - np.arange(len(mf_ids), dtype=np.float64) / candidates)
    ids = np.concatenate([mf_ids, i2i_ids[keep]])
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    uniq, inv = np.unique(ids, return_inverse=True)
    vals = np.bincount(inv, weights=np.concatenate([bonus, i2i_scores[keep]]))
    kk = min(k, len(uniq))
    top = np.argpartition(-vals, kk - 1)[:kk]
    top = top[np.argsort(-vals[top], kind="stable")]
    return uniq[top], vals[top].astype(np.float32)


def item2item_sparse(rec_rows: np.ndarray, rec_w: np.ndarray, nb_ids: np.ndarray,
                     nb_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item-to-item scores of the candidate items for one query: (L,), (L,), (L, K), (L, K)."""
    contrib = (rec_w[:, None] * nb_w).reshape(-1)
    ids = nb_ids.reshape(-1)
    valid = (ids >= 0) & (contrib > 0)
    if not valid.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    uniq, inv = np.unique(ids[valid], return_inverse=True)
    return uniq, np.bincount(inv, weights=contrib[valid]).astype(np.float32)
