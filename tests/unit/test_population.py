"""The compiled population evaluation ranks exactly as the ranking formula's dense reference."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.ranking import RankingParams, blend_dense, item2item_dense, recency_weights
from recengine.trainer.population import population_hits

POPULATION = [
    RankingParams(0.8, 4, 0.05, 0.02, "all", 1000),
    RankingParams(0.5, 2, 0.0, 0.0, "all", 10),
    RankingParams(1.0, 4, 0.5, 0.0, "decayed", 30),
    RankingParams(0.9, 3, 0.0, 0.3, "decayed", 15),
    RankingParams(0.7, 1, 2.0, 1.5, "all", 100),
]


def _case(rng: np.random.Generator, b: int, n: int, length: int, width: int,
          sparse: float) -> tuple[np.ndarray, ...]:
    mf = rng.normal(size=(b, n))
    recent = np.where(rng.random((b, length)) < 0.85, rng.integers(0, n, (b, length)), -1)
    nb_ids = np.where(rng.random((b, length, width)) < sparse,
                      rng.integers(0, n, (b, length, width)), -1)
    nb_w = np.where(nb_ids >= 0, rng.random((b, length, width)), 0.0)
    nb_ids = np.where(recent[:, :, None] >= 0, nb_ids, -1)
    nb_w = np.where(recent[:, :, None] >= 0, nb_w, 0.0)
    excluded = rng.random((b, n)) < 0.1
    truth = rng.integers(-1, n, b)
    pops = np.stack([rng.permutation(n), rng.permutation(n)[: n // 2].tolist()
                     + [-1] * (n - n // 2)])
    return mf, recent, nb_ids, nb_w, excluded, truth, pops


def _reference(mf: np.ndarray, recent: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
               excluded: np.ndarray, truth: np.ndarray, pops: np.ndarray,
               params: RankingParams, candidates: int, k: int) -> np.ndarray:
    """Hits of the dense reference of the ranking formula (recengine.ranking)."""
    n = mf.shape[1]
    rec_w = recency_weights(recent, params.recency_decay, params.recent_used)
    i2i = item2item_dense(rec_w, nb_ids, nb_w, n)
    pop = pops[0 if params.pop_source == "all" else 1]
    top = blend_dense(mf, i2i, excluded, pop[pop >= 0], params, candidates, k)
    return np.array([t >= 0 and not excluded[u, t] and t in top[u] for u, t in enumerate(truth)])


@pytest.mark.parametrize(("b", "n", "length", "width", "sparse", "candidates"), [
    (30, 200, 4, 6, 0.7, 20),
    (30, 40, 4, 3, 0.3, 50),     # catalogue smaller than the candidates
    (30, 500, 4, 2, 0.05, 10),   # few scored items: unscored ones rank by row
    (20, 12, 4, 2, 0.2, 10),     # fewer items than scored slots
])
def test_population_hits_match_the_dense_ranking(b: int, n: int, length: int, width: int,
                                                  sparse: float, candidates: int) -> None:
    rng = np.random.default_rng(n + width)
    for _ in range(5):
        mf, recent, nb_ids, nb_w, excluded, truth, pops = _case(rng, b, n, length, width,
                                                                sparse)
        rows, cols = np.nonzero(excluded)
        hits, base = population_hits(mf.copy(), nb_ids, nb_w, rows, cols, pops, POPULATION,
                                     candidates, 10, truth)
        for j, params in enumerate(POPULATION):
            expected = _reference(mf, recent, nb_ids, nb_w, excluded, truth, pops, params,
                                  candidates, 10)
            assert hits[:, j].astype(bool).tolist() == expected.tolist(), params
        for s in range(2):
            pop = pops[s][pops[s] >= 0]
            shown = [[c for c in pop if not excluded[u, c]][:10] for u in range(b)]
            expected = [t >= 0 and not excluded[u, t] and t in shown[u]
                        for u, t in enumerate(truth)]
            assert base[:, s].astype(bool).tolist() == expected
