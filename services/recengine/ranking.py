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
    b, n = mf.shape
    mf = np.where(excluded, -np.inf, mf)
    m = min(candidates, n)
    score = np.where(excluded, -np.inf, i2i).astype(np.float32)
    if blend > 0 and m > 0:
        top = np.argpartition(-mf, m - 1, axis=1)[:, :m]
        order = np.argsort(-np.take_along_axis(mf, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        # Rank over ``candidates`` (not over m): the same bonus as ``blend_candidates`` even
        # when the catalogue is smaller than the candidate list.
        bonus = (blend * (1.0 - np.arange(m, dtype=np.float32) / candidates))[None, :]
        finite = np.isfinite(np.take_along_axis(mf, top, 1))
        rows = np.broadcast_to(np.arange(b)[:, None], top.shape)
        score[rows[finite], top[finite]] += np.broadcast_to(bonus, top.shape)[finite]
    kk = min(k, n)
    best = np.argpartition(-score, kk - 1, axis=1)[:, :kk]
    order = np.argsort(-np.take_along_axis(score, best, 1), axis=1, kind="stable")
    return np.take_along_axis(best, order, 1)


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
