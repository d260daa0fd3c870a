"""Popularity: a time-decayed heavy-hitters sketch of fixed size."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.popularity import DecayedTopK, Popularity

DAY = 86400.0


def _stream(rng: np.random.Generator, heavy: np.ndarray, heavy_share: float, noise_keys: int,
            n: int) -> np.ndarray:
    """n keys: a share of them drawn from the heavy keys, the rest uniform over noise keys."""
    is_heavy = rng.random(n) < heavy_share
    keys = rng.integers(1000, 1000 + noise_keys, n)
    keys[is_heavy] = rng.choice(heavy, is_heavy.sum())
    return keys


@pytest.mark.parametrize("batch", [1, 64, 1000])
def test_sketch_keeps_the_true_heavy_hitters_among_many_more_distinct_keys(batch: int) -> None:
    rng = np.random.default_rng(1)
    heavy = np.arange(5)
    keys = _stream(rng, heavy, heavy_share=0.4, noise_keys=20_000, n=30_000)
    sketch = DecayedTopK(capacity=50, half_life=1e12)
    ts = np.full(len(keys), 1000.0)
    for start in range(0, len(keys), batch):
        sl = slice(start, start + batch)
        sketch.update(keys[sl], ts[sl], np.ones(len(keys[sl])))
    assert len(sketch) == 50
    top, counts = sketch.top(5)
    assert set(top.tolist()) == set(heavy.tolist())
    true = np.bincount(keys[np.isin(keys, heavy)], minlength=5)
    # Space-Saving never under-counts a tracked key, and over-counts by at most N / capacity.
    for key, count in zip(top.tolist(), counts.tolist(), strict=True):
        assert true[key] <= count + 1e-6 <= true[key] + len(keys) / 50 + 1e-6


def test_counts_are_exact_while_the_sketch_has_room() -> None:
    sketch = DecayedTopK(capacity=10, half_life=1e12)
    sketch.update(np.array([3, 1, 3, 2, 3, 1]), np.full(6, 5.0), np.array([1, 1, 1, 1, 1, 2.0]))
    top, counts = sketch.top(10)
    assert top.tolist() == [1, 3, 2]
    np.testing.assert_allclose(counts, [3.0, 3.0, 1.0])


def test_top_is_sorted_heaviest_first_and_bounded_by_n() -> None:
    sketch = DecayedTopK(capacity=100, half_life=1e12)
    keys = np.repeat(np.arange(20), np.arange(1, 21))
    sketch.update(keys, np.zeros(len(keys)) + 1.0, None)
    top, counts = sketch.top(3)
    assert top.tolist() == [19, 18, 17]
    assert np.all(np.diff(counts) <= 0)
    assert sketch.top(500)[0].shape == (20,)


def test_empty_sketch_has_no_top() -> None:
    top, counts = DecayedTopK(10, DAY).top(5)
    assert top.shape == counts.shape == (0,)


def test_time_decay_lets_a_recently_hot_item_overtake_an_old_favourite() -> None:
    sketch = DecayedTopK(capacity=10, half_life=DAY)
    t0 = 1_700_000_000.0
    old = np.full(100, 1)  # item 1: 100 events thirty days ago
    sketch.update(old, np.full(100, t0), np.ones(100))
    recent = np.full(30, 2)  # item 2: 30 events today
    sketch.update(recent, np.full(30, t0 + 30 * DAY), np.ones(30))
    top, counts = sketch.top(2, now=t0 + 30 * DAY)
    assert top.tolist() == [2, 1]
    assert counts[0] == pytest.approx(30.0)
    assert counts[1] == pytest.approx(100.0 * 2.0 ** -30)


def test_decayed_weight_halves_every_half_life() -> None:
    sketch = DecayedTopK(capacity=10, half_life=DAY)
    sketch.update(np.array([7]), np.array([1000.0]), np.array([8.0]))
    assert sketch.top(1, now=1000.0)[1][0] == pytest.approx(8.0)
    assert sketch.top(1, now=1000.0 + 2 * DAY)[1][0] == pytest.approx(2.0)


def test_reference_time_moves_forward_without_changing_decayed_counts() -> None:
    sketch = DecayedTopK(capacity=10, half_life=1.0)
    sketch.update(np.array([1]), np.array([0.0]), np.array([1.0]))
    sketch.update(np.array([2]), np.array([1.0]), np.array([1.0]))
    # 100 half-lives later the exponent would overflow the rescale limit: t_ref moves.
    sketch.update(np.array([3]), np.array([101.0]), np.array([1.0]))
    assert sketch.t_ref == 101.0
    top, counts = sketch.top(3, now=101.0)
    assert top[0] == 3
    assert counts[0] == pytest.approx(1.0)
    assert np.all(np.isfinite(counts))


def test_state_round_trips_and_the_copy_keeps_counting() -> None:
    rng = np.random.default_rng(0)
    sketch = DecayedTopK(capacity=20, half_life=DAY)
    keys = rng.integers(0, 100, 500)
    sketch.update(keys, 1e9 + np.sort(rng.random(500)) * DAY, np.ones(500))
    copy = DecayedTopK.from_state(sketch.state())
    for a, b in zip(sketch.top(20, now=1e9 + DAY), copy.top(20, now=1e9 + DAY), strict=True):
        np.testing.assert_array_equal(a, b)
    more = rng.integers(0, 100, 200)
    for s in (sketch, copy):
        s.update(more, np.full(200, 1e9 + 2 * DAY), np.ones(200))
    for a, b in zip(sketch.top(20), copy.top(20), strict=True):
        np.testing.assert_array_equal(a, b)


def test_popularity_keeps_lists_per_category() -> None:
    pop = Popularity(capacity=40, half_life=DAY)
    rows = np.array([0, 0, 1, 2, 2, 2, 3])
    cats = np.array([0, 0, 1, 0, 0, 0, -1])
    pop.update(rows, np.full(7, 10.0), np.ones(7), cats, ["books", "films"])
    assert pop.top(10)[0].tolist() == [2, 0, 1, 3]
    assert pop.top(10, "books")[0].tolist() == [2, 0]
    assert pop.top(10, "films")[0].tolist() == [1]
    assert pop.top(10, "games")[0].shape == (0,)
    assert pop.by_category["books"].capacity == 10  # a quarter of the overall capacity, >= 10


def test_popularity_state_round_trips() -> None:
    pop = Popularity(capacity=40, half_life=DAY)
    pop.update(np.array([5, 6, 5]), np.array([1.0, 2.0, 3.0]), np.ones(3), np.array([0, 1, 0]),
               ["a", "b"])
    copy = Popularity.from_state(pop.state())
    for category in (None, "a", "b"):
        for x, y in zip(pop.top(5, category), copy.top(5, category), strict=True):
            np.testing.assert_array_equal(x, y)
