"""Search over one loaded embedding version: by query vector, by similar items, blended with
the item-to-item signal exactly as the trainer's evaluation scores (see ``ranking.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recengine.ranking import RankingParams, blend_candidates, item2item_sparse, recency_weights
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
        self.candidates = int(m.get("candidates", 200))
        # The ranking in force when the version was published (self-tuned by the trainer).
        self.params = RankingParams.from_dict(m.get("ranking") or {})
        rows = version.rows
        self.popular_rows = np.array([rows[i] for i, _ in version.popular.get("", [])
                                      if i in rows], dtype=np.int64)

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
        rows = np.asarray(recent_rows[: self.params.recent_used], dtype=np.int64)
        weights = recency_weights(rows[None, :], self.params.recency_decay)[0]
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
        i2i_ids, i2i_scores = self._i2i(recent_rows)
        # blend_candidates excludes with np.isin (sorted, n log n): the exclusion list comes
        # from the client and may be long.
        return blend_candidates(mf, i2i_ids, i2i_scores, self.params, self.candidates, k,
                                frozenset(excl), self.popular_rows)

    def similar(self, item_ids: Sequence[str], k: int, exclude: Sequence[str] = ()) -> list[Hit]:
        """Items like the given ones (first = strongest): their co-occurrence neighbours,
        blended with the model's nearest items to the mean of their vectors."""
        rows = self.rows(item_ids, strict=True)
        excl = frozenset(self.rows(exclude, strict=False)) | frozenset(rows)
        vec = self.v.vectors[rows].mean(axis=0).copy()
        vec[-1] = 1.0  # the bias column: like a user, prefer items the model rates well
        mf = self._mf_candidates(vec, self.candidates + len(excl))
        i2i_ids, i2i_scores = self._i2i(rows)
        out_rows, scores = blend_candidates(mf, i2i_ids, i2i_scores, self.params,
                                            self.candidates, k, excl, self.popular_rows)
        return self._hits(out_rows, scores)
