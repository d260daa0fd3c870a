"""The compiled population evaluation ranks exactly as the ranking formula's dense reference."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.cooc import ItemNeighbours
from recengine.ranking import (
    RankingParams,
    blend_dense,
    item2item_dense,
    recency_weights,
    top_rows,
)
from recengine.trainer.population import population_hits

POPULATION = [
    RankingParams(0.8, 4, 0.05, 0.02, "all", 1000),
    RankingParams(0.5, 2, 0.0, 0.0, "all", 10),
    RankingParams(1.0, 4, 0.5, 0.0, "decayed", 30),
    RankingParams(0.9, 3, 0.0, 0.3, "decayed", 15),
    RankingParams(0.7, 1, 2.0, 1.5, "all", 100),
]


def _neighbours(rng: np.random.Generator, n: int, width: int, sparse: float) -> ItemNeighbours:
    """A co-occurrence sketch in some state: weights above their admission floors, or not."""
    nb = ItemNeighbours(width, 1e9, 0.9, n, exponent=0.4)
    nb.nb[:] = np.where(rng.random((n, width)) < sparse, rng.integers(0, n, (n, width)), -1)
    nb.w[:] = np.where(nb.nb >= 0, rng.random((n, width)) * 5, 0).astype(np.float32)
    nb.err[:] = np.where(rng.random((n, width)) < 0.3, nb.w * rng.random((n, width)) * 1.2,
                         0).astype(np.float32)
    nb.cnt[:] = rng.random(n) * 20 + 0.5
    return nb


def _reference(mf: np.ndarray, recent: np.ndarray, nb: ItemNeighbours, excluded: np.ndarray,
               truth: np.ndarray, pop: np.ndarray, params: RankingParams, candidates: int,
               k: int) -> list[bool]:
    """Hits of the dense reference of the ranking formula (recengine.ranking), with the
    neighbours read as the trainer publishes them (ItemNeighbours.normalised)."""
    n = mf.shape[1]
    nb_ids, nb_w = nb.normalised(recent)
    rec_w = recency_weights(recent, params.recency_decay, params.recent_used)
    i2i = item2item_dense(rec_w, nb_ids, nb_w, n)
    top = blend_dense(mf, i2i, excluded, pop[pop >= 0], params, candidates, k)
    return [bool(t >= 0 and not excluded[u, t] and t in top[u]) for u, t in enumerate(truth)]


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
        nb = _neighbours(rng, n, width, sparse)
        mf = rng.normal(size=(b, n))
        recent = np.where(rng.random((b, length)) < 0.85, rng.integers(0, n, (b, length)), -1)
        excluded = rng.random((b, n)) < 0.1
        truth = rng.integers(-1, n, b)
        pops = np.stack([rng.permutation(n), np.r_[rng.permutation(n)[: n // 2],
                                                    np.full(n - n // 2, -1)]])
        rows, cols = np.nonzero(excluded)
        masked = np.where(excluded, -np.inf, mf)
        top, vals = top_rows(masked, min(candidates, n))
        hits, base = population_hits(top, np.isfinite(vals), recent, nb, rows, cols, pops,
                                     POPULATION, candidates, 10, truth, n)
        for j, params in enumerate(POPULATION):
            pop = pops[0 if params.pop_source == "all" else 1]
            expected = _reference(mf, recent, nb, excluded, truth, pop, params, candidates, 10)
            assert hits[:, j].astype(bool).tolist() == expected, params
        for s in range(2):
            pop = pops[s][pops[s] >= 0]
            shown = [[c for c in pop if not excluded[u, c]][:10] for u in range(b)]
            expected = [bool(t >= 0 and not excluded[u, t] and t in shown[u])
                        for u, t in enumerate(truth)]
            assert base[:, s].astype(bool).tolist() == expected


def test_without_the_model_a_population_that_does_not_weigh_it_ranks_the_same() -> None:
    rng = np.random.default_rng(1)
    n, b = 100, 40
    nb = _neighbours(rng, n, 5, 0.5)
    recent = rng.integers(0, n, (b, 3))
    truth = rng.integers(0, n, b)
    pops = np.stack([rng.permutation(n), rng.permutation(n)])
    no_model = [p for p in POPULATION if p.blend == 0]
    empty = np.zeros(0, dtype=np.int64)
    top, vals = top_rows(rng.normal(size=(b, n)), 20)
    with_mf, _ = population_hits(top, np.isfinite(vals), recent, nb, empty, empty, pops,
                                 no_model, 20, 10, truth, n)
    without, _ = population_hits(None, None, recent, nb, empty, empty, pops, no_model, 20, 10,
                                 truth, n)
    np.testing.assert_array_equal(with_mf, without)
