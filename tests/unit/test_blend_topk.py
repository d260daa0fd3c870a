"""The trainer's compiled blended top-k ranks exactly as the numpy formula it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.evaluation import popularity_hits_pairs
from recengine.ranking import blend_sparse, recency_weights
from recengine.trainer.blend_topk import blend_topk, evaluate_chunk


def _case(seed: int, b: int, n: int, length: int, width: int, sparse: bool):
    rng = np.random.default_rng(seed)
    mf = rng.normal(size=(b, n)).astype(np.float32)
    recent = rng.integers(-1, n, size=(b, length))
    nb_ids = rng.integers(-1, n, size=(b, length, width))
    nb_w = rng.random((b, length, width)).astype(np.float32)
    if sparse:  # users without any item-to-item signal, and neighbours with zero weight
        nb_ids[: b // 3] = -1
        nb_w[rng.random(nb_w.shape) < 0.2] = 0.0
    rec_w = recency_weights(recent, 0.65)
    n_ex = rng.integers(0, min(n, 40), size=b)
    ex_rows = np.repeat(np.arange(b), n_ex)
    ex_cols = np.concatenate([rng.choice(n, c, replace=False) for c in n_ex])
    perm = rng.permutation(len(ex_rows))  # any order, as the evaluation builds them
    return mf, rec_w, nb_ids, nb_w, ex_rows[perm], ex_cols[perm]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("b", "n", "width", "blend", "candidates", "k"), [
    (64, 3000, 50, 0.15, 200, 10),
    (17, 500, 10, 0.15, 50, 10),
    (9, 30, 5, 0.5, 200, 10),   # fewer items than candidates
    (12, 8, 3, 0.15, 10, 10),   # fewer items than k: whole-catalogue fallback
    (20, 400, 10, 0.0, 200, 5),  # item-to-item only
])
def test_compiled_top_k_equals_the_numpy_blend(seed: int, b: int, n: int, width: int,
                                               blend: float, candidates: int, k: int) -> None:
    mf, rec_w, nb_ids, nb_w, ex_rows, ex_cols = _case(seed, b, n, 3, width, sparse=seed % 2 == 1)
    expected = blend_sparse(mf.copy(), rec_w, nb_ids, nb_w, ex_rows, ex_cols, blend,
                            candidates, k)
    got = blend_topk(mf, rec_w, nb_ids, nb_w, ex_rows, ex_cols, blend, candidates, k)
    np.testing.assert_array_equal(got, expected)


def test_excluded_items_are_never_recommended_even_with_the_strongest_signal() -> None:
    mf = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    nb_ids = np.array([[[0, 1, 5]]])
    nb_w = np.array([[[9.0, 9.0, 9.0]]], dtype=np.float32)
    rec_w = np.ones((1, 1), dtype=np.float32)
    top = blend_topk(mf, rec_w, nb_ids, nb_w, np.array([0, 0]), np.array([0, 1]), 0.15, 10, 3)
    assert top.tolist() == [[5, 2, 3]]  # the neighbour first, then the model's order


@pytest.mark.parametrize("seed", range(6))
def test_the_popularity_baseline_in_the_same_pass_equals_the_numpy_one(seed: int) -> None:
    mf, rec_w, nb_ids, nb_w, ex_rows, ex_cols = _case(seed, 40, 300, 3, 10, sparse=True)
    rng = np.random.default_rng(seed)
    pop_top = rng.permutation(300)[:60]
    truth = np.where(rng.random(40) < 0.2, -1, rng.choice(pop_top, 40))
    expected = popularity_hits_pairs(pop_top, truth, ex_rows, ex_cols, 10, 300)
    top, hits = evaluate_chunk(mf, rec_w, nb_ids, nb_w, ex_rows, ex_cols, 0.15, 50, 10,
                               pop_top, truth)
    np.testing.assert_array_equal(hits, expected)
    assert 0 < hits.sum() < len(hits)
    assert top.shape == (40, 10)
