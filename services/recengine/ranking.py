"""How a recommendation is scored: item-to-item first, the model and popularity as rank bonuses.

``score(c) = item2item(c) + blend * mf_bonus(c) + pop_blend * pop_bonus(c)``

* ``item2item(c) = sum_{p < recent_used} recency_decay**p * cos(r_p, c)`` over the user's
  recent items ``r_p`` (newest first), with the cosine-normalised co-occurrence neighbours of
  each ``r_p``;
* ``mf_bonus(c) = 1 - rank_mf(c) / candidates`` when c is among the ``candidates`` best items by
  the GMF inner product ``<p_u * w, q_c> + b_c`` (exactly what the faiss inner-product index
  returns), else 0;
* ``pop_bonus(c) = 1 - rank_pop(c) / pop_depth`` when c is among the ``pop_depth`` most popular
  items (all-time or decayed counts, ``pop_source``), else 0. A deep list (1,000 items) with a
  gentle slope works as a popularity prior: the popular part of the catalogue is lifted as a
  whole and the item-to-item signal orders it (measured on MovieLens: recall@10 0.116 with 200
  items, 0.120 with 1,000).

Ranks are taken after the user's own items are excluded. Rank fusion keeps the three signals on
one scale without calibrating raw inner products or counts: strong neighbours of what the user
just did lead, and the model and popularity order the rest (and are all there is for a user
whose recent items have no neighbours yet). A small ``pop_blend`` is the tie-break by
popularity of a plain item-kNN; a large one makes popularity a real voice. Which weights serve
best differs from stream to stream, so the trainer tunes them live
(:mod:`recengine.tuning`) and publishes the ones in force with each version.

Ties go to the lower item row, and items with no score at all (none of the three signals) rank
after every scored item, lowest row first: the trainer's evaluation
(:mod:`recengine.trainer.population`), the dense reference below and the index service all rank
by this one definition, so a measured recall is the recall of what is served. Pure numpy: the
index service imports this, not torch or numba.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

#: Where the popularity bonus reads its ranking.
POP_SOURCES = ("all", "decayed")


@dataclass(frozen=True)
class RankingParams:
    """The scoring weights of one ranking (what self-tuning chooses among)."""

    recency_decay: float = 0.8
    """Weight of the p-th most recent item (p = 0 newest) is ``recency_decay**p``."""
    recent_used: int = 20
    """How many of the user's recent items score (at most the trainer's ``recent_items``)."""
    blend: float = 0.0
    """Weight of the model's rank bonus."""
    pop_blend: float = 0.3
    """Weight of the popularity rank bonus."""
    pop_source: str = "decayed"
    """Which popularity ranks the bonus: ``all`` (all-time counts) or ``decayed``."""
    pop_depth: int = 1000
    """How many of the most popular items get a popularity bonus."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankingParams:
        """The params of a manifest or checkpoint (unknown keys ignored, missing ones default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def recency_weights(recent_rows: np.ndarray, decay: float, used: int | None = None
                    ) -> np.ndarray:
    """``decay**p`` for the p-th most recent item, 0 where a slot is empty or ``p >= used``."""
    length = recent_rows.shape[-1]
    pos = decay ** np.arange(length, dtype=np.float64)
    if used is not None:
        pos[used:] = 0.0
    return np.where(recent_rows >= 0, pos, 0.0)


def item2item_sparse(rec_rows: np.ndarray, rec_w: np.ndarray, nb_ids: np.ndarray,
                     nb_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item-to-item scores of the candidate items for one query: (L,), (L,), (L, K), (L, K)."""
    contrib = (np.asarray(rec_w, dtype=np.float64)[:, None] * nb_w).reshape(-1)
    ids = np.asarray(nb_ids).reshape(-1)
    valid = (ids >= 0) & (contrib > 0)
    if not valid.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    uniq, inv = np.unique(ids[valid], return_inverse=True)
    return uniq.astype(np.int64), np.bincount(inv, weights=contrib[valid])


def item2item_dense(rec_w: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
                    n_items: int) -> np.ndarray:
    """Item-to-item scores of every item for b users: (b, L) weights, (b, L, K) neighbours."""
    b = rec_w.shape[0]
    contrib = (np.asarray(rec_w, dtype=np.float64)[:, :, None] * nb_w).reshape(b, -1)
    ids = nb_ids.reshape(b, -1)
    valid = ids >= 0
    flat = (np.arange(b)[:, None] * n_items + np.where(valid, ids, 0))[valid]
    out = np.bincount(flat, weights=contrib[valid], minlength=b * n_items)
    return out.reshape(b, n_items)


def _rank_bonus(ids: np.ndarray, weight: float, candidates: int) -> np.ndarray:
    return weight * (1.0 - np.arange(len(ids), dtype=np.float64) / candidates)


def blend_candidates(mf_ids: np.ndarray, i2i_ids: np.ndarray, i2i_scores: np.ndarray,
                     params: RankingParams, candidates: int, k: int,
                     exclude: set[int] | frozenset[int] = frozenset(),
                     pop_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and scores for one query from the MF candidates (best first), the
    item-to-item scores and the popularity ranking (most popular first).

    Only items with a positive score are returned (so fewer than k when the three signals
    name fewer items); an unscored item would rank after them, lowest row first."""
    mf_ids = np.asarray(mf_ids, dtype=np.int64)
    i2i_ids = np.asarray(i2i_ids, dtype=np.int64)
    i2i_scores = np.asarray(i2i_scores, dtype=np.float64)
    pop = np.zeros(0, dtype=np.int64) if pop_ids is None else np.asarray(pop_ids, np.int64)
    mf_ids = mf_ids[mf_ids >= 0]
    keep = (i2i_ids >= 0) & (i2i_scores > 0)
    if exclude:
        excl = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
        mf_ids = mf_ids[~np.isin(mf_ids, excl)]
        pop = pop[~np.isin(pop, excl)]
        keep &= ~np.isin(i2i_ids, excl)
    mf_ids = mf_ids[:candidates] if params.blend > 0 else mf_ids[:0]
    pop = pop[: params.pop_depth] if params.pop_blend > 0 else pop[:0]
    ids = np.concatenate([mf_ids, pop, i2i_ids[keep]])
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    weights = np.concatenate([_rank_bonus(mf_ids, params.blend, candidates),
                              _rank_bonus(pop, params.pop_blend, params.pop_depth),
                              i2i_scores[keep]])
    uniq, inv = np.unique(ids, return_inverse=True)
    vals = np.bincount(inv, weights=weights)
    positive = vals > 0
    uniq, vals = uniq[positive], vals[positive]
    kk = min(k, len(uniq))
    if kk == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    top = np.argpartition(-vals, kk - 1)[:kk]
    top = top[np.lexsort((uniq[top], -vals[top]))]
    return uniq[top], vals[top]


def blend_dense(mf: np.ndarray, i2i: np.ndarray, excluded: np.ndarray, pop_ids: np.ndarray,
                params: RankingParams, candidates: int, k: int) -> np.ndarray:
    """Top-k item rows per user (b, k) from full score matrices (the dense reference of the
    formula); ``excluded`` is a (b, n) bool mask, ``pop_ids`` the popularity ranking."""
    b, n = mf.shape
    out = np.empty((b, min(k, n)), dtype=np.int64)
    pop_ids = np.asarray(pop_ids, dtype=np.int64)
    for u in range(b):
        ok = ~excluded[u]
        score = np.where(ok, i2i[u], -np.inf).astype(np.float64)
        if params.blend > 0:
            order = np.argsort(-np.where(ok, mf[u], -np.inf), kind="stable")
            top = order[: min(candidates, int(ok.sum()))]
            score[top] += _rank_bonus(top, params.blend, candidates)
        if params.pop_blend > 0:
            top = pop_ids[ok[pop_ids]][: params.pop_depth]
            score[top] += _rank_bonus(top, params.pop_blend, params.pop_depth)
        out[u] = np.lexsort((np.arange(n), -score))[: out.shape[1]]
    return out


def top_rows(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m best columns of each row (b, m), best first (ties: lower column), and their
    scores."""
    b, n = scores.shape
    if m >= n:
        top = np.tile(np.arange(n), (b, 1))
    else:
        # (At a small kth of the negated scores: numpy's introselect is very slow at a kth near
        # the end of rows full of equal values.)
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    vals = np.take_along_axis(scores, top, 1)
    order = np.lexsort((top, -vals), axis=1) if b else np.zeros((0, top.shape[1]), np.int64)
    return np.take_along_axis(top, order, 1), np.take_along_axis(vals, order, 1)
