"""Ranking: the dense blend (evaluation) and the candidate blend (serving) are one formula."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.ranking import (
    RankingParams,
    blend_candidates,
    blend_dense,
    item2item_dense,
    item2item_sparse,
    recency_weights,
)

PARAMS = RankingParams(recency_decay=0.75, recent_used=4, blend=0.3, pop_blend=0.1, pop_depth=30)


def _random_case(rng: np.random.Generator, n_items: int, n_recent: int = 4, k_nb: int = 5
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mf = rng.normal(size=n_items).astype(np.float32)
    recent = rng.choice(n_items, n_recent, replace=False)
    nb_ids = rng.integers(0, n_items, (n_recent, k_nb))
    nb_w = rng.random((n_recent, k_nb)).astype(np.float32)
    pop = rng.permutation(n_items)[: n_items // 2]
    return mf, recent, nb_ids, nb_w, pop


def _serve(mf: np.ndarray, recent: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
           pop: np.ndarray, excluded: set[int], params: RankingParams, candidates: int, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """What the index service does: faiss returns the best MF items, i2i is sparse."""
    mf_ids = np.argsort(-mf, kind="stable")[: candidates + len(excluded)]
    w = recency_weights(recent[None, :], params.recency_decay, params.recent_used)[0]
    i2i_ids, i2i_scores = item2item_sparse(recent, w, nb_ids, nb_w)
    return blend_candidates(mf_ids, i2i_ids, i2i_scores, params, candidates, k,
                            frozenset(excluded), pop)


def _evaluate(mf: np.ndarray, recent: np.ndarray, nb_ids: np.ndarray, nb_w: np.ndarray,
              pop: np.ndarray, excluded: set[int], params: RankingParams, candidates: int,
              k: int) -> np.ndarray:
    """What the trainer's evaluation ranks: dense scores over every item."""
    n = len(mf)
    w = recency_weights(recent[None, :], params.recency_decay, params.recent_used)
    i2i = item2item_dense(w, nb_ids[None], nb_w[None], n)
    mask = np.zeros((1, n), dtype=bool)
    mask[0, list(excluded)] = True
    return blend_dense(mf[None], i2i, mask, pop, params, candidates, k)[0]


@pytest.mark.parametrize(("n_items", "candidates"), [(500, 50), (300, 300), (40, 200)])
@pytest.mark.parametrize("params", [
    PARAMS,
    RankingParams(0.5, 2, 0.0, 0.0),
    RankingParams(0.9, 3, 0.0, 0.5, "decayed", pop_depth=1000),
    RankingParams(1.0, 4, 2.0, 0.0),
])
def test_dense_and_candidate_blends_rank_the_same_items(n_items: int, candidates: int,
                                                        params: RankingParams) -> None:
    rng = np.random.default_rng(n_items)
    for _ in range(20):
        mf, recent, nb_ids, nb_w, pop = _random_case(rng, n_items)
        excluded = set(recent.tolist()) | set(rng.choice(n_items, 5).tolist())
        served, _ = _serve(mf, recent, nb_ids, nb_w, pop, excluded, params, candidates, 10)
        evaluated = _evaluate(mf, recent, nb_ids, nb_w, pop, excluded, params, candidates, 10)
        # Serving returns only scored items; the dense ranking then goes on with unscored ones.
        assert served.tolist() == evaluated[: len(served)].tolist()


def test_dense_and_sparse_item_to_item_scores_agree() -> None:
    rng = np.random.default_rng(3)
    _, recent, nb_ids, nb_w, _ = _random_case(rng, 50)
    w = recency_weights(recent[None, :], 0.5)
    dense = item2item_dense(w, nb_ids[None], nb_w[None], 50)[0]
    ids, scores = item2item_sparse(recent, w[0], nb_ids, nb_w)
    np.testing.assert_allclose(dense[ids], scores, rtol=1e-12)
    assert np.count_nonzero(dense) == len(ids)


def test_recency_weights_decay_by_position_and_ignore_empty_and_unused_slots() -> None:
    np.testing.assert_allclose(recency_weights(np.array([[4, 2, -1]]), 0.5), [[1.0, 0.5, 0.0]])
    np.testing.assert_allclose(recency_weights(np.array([[4, 2, 3]]), 0.5, used=2),
                               [[1.0, 0.5, 0.0]])


def test_excluded_items_never_appear() -> None:
    rng = np.random.default_rng(7)
    mf, recent, nb_ids, nb_w, pop = _random_case(rng, 100)
    top_mf = set(np.argsort(-mf)[:15].tolist())
    excluded = top_mf | set(nb_ids.ravel().tolist()) | set(pop[:10].tolist())
    served, _ = _serve(mf, recent, nb_ids, nb_w, pop, excluded, PARAMS, 50, 20)
    evaluated = _evaluate(mf, recent, nb_ids, nb_w, pop, excluded, PARAMS, 50, 20)
    assert not excluded & set(served.tolist())
    assert not excluded & set(evaluated.tolist())
    assert len(served) == 20


def test_strong_item_to_item_signal_leads_and_model_and_popularity_order_the_rest() -> None:
    mf = np.linspace(1.0, 0.0, 20).astype(np.float32)  # the model prefers 0, 1, 2, ...
    recent = np.array([19])
    nb_ids = np.array([[15, -1]])
    nb_w = np.array([[0.9, 0.0]], dtype=np.float32)
    pop = np.array([2, 1, 0])  # popularity prefers 2, 1, 0
    params = RankingParams(1.0, 1, blend=0.3, pop_blend=0.2, pop_depth=10)
    rows, scores = _serve(mf, recent, nb_ids, nb_w, pop, {19}, params, 10, 4)
    assert rows.tolist() == [15, 0, 1, 2]
    assert scores[0] == pytest.approx(0.9)  # outside the MF candidates: i2i only
    # rank 0 of the model (0.3) and rank 2 of popularity (0.2 * (1 - 2/10))
    assert scores[1] == pytest.approx(0.3 + 0.16)
    assert np.all(np.diff(scores) < 0)


def test_ties_go_to_the_lower_item_row() -> None:
    rows, _ = blend_candidates(np.array([], dtype=np.int64), np.array([9, 3, 5]),
                               np.array([0.5, 0.5, 0.5]), RankingParams(blend=0.0,
                                                                        pop_blend=0.0), 10, 2)
    assert rows.tolist() == [3, 5]


def test_without_any_signal_there_is_nothing_to_recommend() -> None:
    rows, scores = blend_candidates(np.array([], dtype=np.int64), np.array([]), np.array([]),
                                    PARAMS, 10, 5)
    assert rows.shape == scores.shape == (0,)


def test_zero_weights_rank_by_item_to_item_only() -> None:
    rows, _ = blend_candidates(np.array([0, 1, 2]), np.array([2, 5]),
                               np.array([0.1, 0.2], dtype=np.float32),
                               RankingParams(blend=0.0, pop_blend=0.0), 10, 5,
                               pop_ids=np.array([0, 1]))
    assert rows.tolist() == [5, 2]


def test_params_round_trip_and_ignore_unknown_keys() -> None:
    assert RankingParams.from_dict({**PARAMS.as_dict(), "extra": 1}) == PARAMS
    assert RankingParams.from_dict({}) == RankingParams()
