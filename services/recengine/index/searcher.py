"""Search over one loaded embedding version: by query vector, by similar items, blended with
the item-to-item signal exactly as the trainer's evaluation scores (see ``ranking.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.ranking import blend_candidates, item2item_sparse, recency_weights
from recengine.versions import EmbeddingVersion


class UnknownItems(LookupError):
    """Some item ids are not in the served version."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(", ".join(ids))
        self.ids = ids


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float


class Searcher:
    """Answers queries against one :class:`EmbeddingVersion` (read-only, thread-safe)."""

    def __init__(self, version: EmbeddingVersion) -> None:
        self.v = version
        m = version.manifest
        self.blend = float(m.get("blend", 0.3))
        self.candidates = int(m.get("candidates", 200))
        self.recency_decay = float(m.get("recency_decay", 0.75))
        self.recent_items = int(m.get("recent_items", 10))

    def rows(self, item_ids: Sequence[str], strict: bool) -> list[int]:
        rows = self.v.rows
        if strict:
            missing = [i for i in item_ids if i not in rows]
            if missing:
                raise UnknownItems(missing)
        return [rows[i] for i in item_ids if i in rows]

    def _mf_candidates(self, query: np.ndarray, n: int) -> np.ndarray:
        n = min(n, len(self.v.item_ids))
        _, ids = self.v.index.search(query.reshape(1, -1).astype(np.float32), n)
        return ids[0]

    def _i2i(self, recent_rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        if not recent_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.asarray(recent_rows[: self.recent_items], dtype=np.int64)
        weights = recency_weights(rows[None, :], self.recency_decay)[0]
        return item2item_sparse(rows, weights, self.v.neighbour_ids[rows],
                                self.v.neighbour_weights[rows])

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        ids = self.v.item_ids
        return [Hit(ids[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]

    def hit_dicts(self, rows: np.ndarray, scores: np.ndarray) -> list[dict]:
        """``[{"item_id", "score"}, ...]``: the wire form of hits."""
        ids = self.v.item_ids
        return [{"item_id": ids[r], "score": s}
                for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]

    def search(self, vector: np.ndarray, k: int, exclude: Sequence[str] = (),
               recent: Sequence[str] = ()) -> list[Hit]:
        """Top-k for a query vector ``[p_u * w, 1]``, blended with the recent items' neighbours
        when ``recent`` (newest first) is given; ``exclude`` ids never appear."""
        return self._hits(*self.search_rows(vector, k, exclude, recent))

    def search_rows(self, vector: np.ndarray, k: int, exclude: Sequence[str] = (),
                    recent: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` as item rows and float32 scores, best first."""
        rows = self.v.rows
        excl = {rows[i] for i in exclude if i in rows}
        recent_rows = [rows[i] for i in recent if i in rows]
        mf = self._mf_candidates(vector, self.candidates + len(excl))
        mf = mf[mf >= 0]
        if excl:
            # Exclusion here, in one vectorised comparison against the (few) excluded rows:
            # blend_candidates then gets candidates and neighbours with nothing to exclude,
            # which ranks exactly as passing ``exclude`` to it, without two np.isin calls.
            ex = np.fromiter(excl, dtype=mf.dtype, count=len(excl))
            mf = mf[(mf[:, None] != ex).all(axis=1)]
        if not recent_rows:
            mf = mf[:k]
            scores = (vector.reshape(1, -1).astype(np.float32) @ self.v.vectors[mf].T)[0]
            return mf, np.asarray(scores, dtype=np.float32)
        i2i_ids, i2i_scores = self._i2i(recent_rows)
        if excl and len(i2i_ids):
            keep = (i2i_ids[:, None] != ex.astype(i2i_ids.dtype)).all(axis=1)
            i2i_ids, i2i_scores = i2i_ids[keep], i2i_scores[keep]
        return blend_candidates(mf, i2i_ids, i2i_scores, self.blend, self.candidates, k)

    def similar(self, item_ids: Sequence[str], k: int, exclude: Sequence[str] = ()) -> list[Hit]:
        """Items like the given ones (first = strongest): their co-occurrence neighbours,
        blended with the model's nearest items to the mean of their vectors."""
        rows = self.rows(item_ids, strict=True)
        excl = frozenset(self.rows(exclude, strict=False)) | frozenset(rows)
        vec = self.v.vectors[rows].mean(axis=0).copy()
        vec[-1] = 1.0  # the bias column: like a user, prefer items the model rates well
        mf = self._mf_candidates(vec, self.candidates + len(excl))
        i2i_ids, i2i_scores = self._i2i(rows)
        out_rows, scores = blend_candidates(mf, i2i_ids, i2i_scores, self.blend,
                                            self.candidates, k, excl)
        return self._hits(out_rows, scores)
