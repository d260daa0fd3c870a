"""The item-to-item signal: recent items per user and co-occurrence neighbours per item."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.cooc import ItemNeighbours, RecentItems

NEVER = 1e12  # a half-life long enough that nothing decays within a test


def _consume(nb: ItemNeighbours, recent: RecentItems, user: int, item: int, t: float,
             weight: float = 1.0) -> None:
    """One event, as the learner applies it: learn from the user's previous items, then push."""
    prev, _ = recent.get(np.array([user]))
    nb.update(prev, np.array([item]), np.array([t]), np.array([weight], dtype=np.float32))
    recent.advance(np.array([user]), np.array([item]), np.array([t]))


def test_recent_items_are_kept_newest_first_up_to_the_length() -> None:
    recent = RecentItems(length=3, capacity=4)
    for n, item in enumerate([10, 11, 12, 13]):
        recent.advance(np.array([2]), np.array([item]), np.array([100.0 + n]))
    rows, ts = recent.get(np.array([2, 0]))
    np.testing.assert_array_equal(rows, [[13, 12, 11], [-1, -1, -1]])
    np.testing.assert_array_equal(ts[0], [103.0, 102.0, 101.0])


def test_recent_items_push_many_users_at_once_and_grow() -> None:
    recent = RecentItems(length=2, capacity=2)
    recent.ensure(5)
    assert len(recent.rows) >= 5
    recent.advance(np.array([0, 4]), np.array([7, 8]), np.array([1.0, 2.0]))
    recent.advance(np.array([4]), np.array([9]), np.array([3.0]))
    np.testing.assert_array_equal(recent.get(np.array([0, 4]))[0], [[7, -1], [9, 8]])


def test_recent_items_state_round_trips() -> None:
    recent = RecentItems(length=3, capacity=8)
    recent.advance(np.array([1, 3]), np.array([5, 6]), np.array([1.0, 2.0]))
    copy = RecentItems.from_state(recent.state(4))
    for a, b in zip(recent.get(np.arange(4)), copy.get(np.arange(4)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_items_consumed_one_after_the_other_become_neighbours_both_ways() -> None:
    nb = ItemNeighbours(k=4, half_life=NEVER, pair_decay=0.5, capacity=8)
    recent = RecentItems(length=3, capacity=16)
    for user in range(10):
        _consume(nb, recent, user, 0, 100.0 + user)
        _consume(nb, recent, user, 1, 100.5 + user)
    ids, w = nb.normalised(np.array([0, 1, 2]), now=200.0)
    assert ids[0][w[0] > 0].tolist() == [1]
    assert ids[1][w[1] > 0].tolist() == [0]
    assert not (w[2] > 0).any()  # never seen: no neighbours
    # Always together: cosine 1.
    assert w[0][ids[0] == 1][0] == pytest.approx(1.0, rel=1e-5)


def test_scores_are_cosine_normalised_by_the_item_counts() -> None:
    nb = ItemNeighbours(k=4, half_life=NEVER, pair_decay=0.5, capacity=8)
    recent = RecentItems(length=3, capacity=32)
    for user in range(4):  # 4 times 0 -> 1
        _consume(nb, recent, user, 0, 1.0)
        _consume(nb, recent, user, 1, 2.0)
    for user in range(4, 16):  # item 1 is also consumed 12 times on its own
        _consume(nb, recent, user, 1, 3.0)
    ids, w = nb.normalised(np.array([0]), now=3.0)
    # C[0, 1] = 4, n_0 = 4, n_1 = 16: 4 / sqrt(4 * 16) = 0.5
    assert w[0][ids[0] == 1][0] == pytest.approx(0.5, rel=1e-5)


def test_older_recent_items_count_less_by_the_recency_decay() -> None:
    nb = ItemNeighbours(k=4, half_life=NEVER, pair_decay=0.5, capacity=8)
    recent = RecentItems(length=3, capacity=4)
    _consume(nb, recent, 0, 0, 1.0)
    _consume(nb, recent, 0, 1, 2.0)
    _consume(nb, recent, 0, 2, 3.0)  # previous items: 1 (weight 1), 0 (weight 0.5)
    ids, w = nb.normalised(np.array([2]), now=3.0)
    weight = dict(zip(ids[0].tolist(), w[0].tolist(), strict=True))
    assert weight[1] == pytest.approx(1.0)
    assert weight[0] == pytest.approx(0.5)


def test_an_item_is_never_its_own_neighbour() -> None:
    nb = ItemNeighbours(k=4, half_life=NEVER, pair_decay=0.5, capacity=8)
    recent = RecentItems(length=3, capacity=4)
    for t in range(5):
        _consume(nb, recent, 0, 3, float(t))
    ids, w = nb.normalised(np.array([3]), now=5.0)
    assert not (w > 0).any()
    assert (ids == -1).all()


def test_each_item_keeps_only_its_k_strongest_neighbours() -> None:
    nb = ItemNeighbours(k=3, half_life=NEVER, pair_decay=1.0, capacity=16)
    recent = RecentItems(length=1, capacity=256)
    user = 0
    # Item 0 is followed by item j (1..8) j times: the strongest are 8, 7, 6.
    for j in range(1, 9):
        for _ in range(j):
            _consume(nb, recent, user, 0, 1.0)
            _consume(nb, recent, user, j, 1.0)
            user += 1
    ids, w = nb.table(9, now=1.0)
    assert ids.dtype == np.int32
    assert ids[0].tolist() == [8, 7, 6]
    assert np.all(np.diff(w[0]) <= 0)  # strongest first


def test_a_rare_item_admitted_at_the_floor_does_not_outrank_real_neighbours() -> None:
    nb = ItemNeighbours(k=3, half_life=NEVER, pair_decay=1.0, capacity=16)
    recent = RecentItems(length=1, capacity=256)
    user = 0
    for j, times in ((1, 20), (2, 10), (3, 5)):  # 0's neighbours, counted often
        for _ in range(times):
            for item in (0, j, 9):  # 9 follows j: keeps 1..3 popular, unrelated to 0
                _consume(nb, recent, user, item, 1.0)
            user += 1
    _consume(nb, recent, user, 0, 1.0)
    _consume(nb, recent, user, 5, 1.0)  # item 5, seen once, enters 0's row at the floor
    assert 5 in nb.nb[0].tolist()
    ids, w = nb.normalised(np.array([0]), now=1.0)
    weight = dict(zip(ids[0].tolist(), w[0].tolist(), strict=True))
    assert weight.get(5, 0.0) < weight[1]


def test_old_co_occurrences_fade_against_fresh_ones() -> None:
    day = 86400.0
    nb = ItemNeighbours(k=1, half_life=day, pair_decay=1.0, capacity=8)
    recent = RecentItems(length=1, capacity=64)
    for user in range(10):  # long ago: 0 -> 1, ten times
        _consume(nb, recent, user, 0, 0.0)
        _consume(nb, recent, user, 1, 0.0)
    for user in range(10, 13):  # today: 0 -> 2, three times
        _consume(nb, recent, user, 0, 30 * day)
        _consume(nb, recent, user, 2, 30 * day)
    ids, _ = nb.normalised(np.array([0]), now=30 * day)
    assert ids[0].tolist() == [2]


def test_a_round_learns_every_users_pair_at_once() -> None:
    nb = ItemNeighbours(k=4, half_life=NEVER, pair_decay=0.5, capacity=8)
    prev = np.array([[0, -1], [2, -1], [4, 5]])
    nb.update(prev, np.array([1, 3, 6]), np.full(3, 1.0), np.ones(3, dtype=np.float32))
    ids, w = nb.normalised(np.array([1, 3, 6]), now=1.0)
    assert set(ids[0][w[0] > 0].tolist()) == {0}
    assert set(ids[1][w[1] > 0].tolist()) == {2}
    assert set(ids[2][w[2] > 0].tolist()) == {4, 5}


def test_normalised_accepts_any_shape_and_empty_slots() -> None:
    nb = ItemNeighbours(k=2, half_life=NEVER, pair_decay=0.5, capacity=4)
    nb.update(np.array([[0]]), np.array([1]), np.array([1.0]), np.ones(1, dtype=np.float32))
    ids, w = nb.normalised(np.array([[0, -1], [1, 1]]), now=1.0)
    assert ids.shape == w.shape == (2, 2, 2)
    assert not (w[0, 1] > 0).any()  # an empty recent slot has no neighbours


def test_neighbours_grow_and_round_trip() -> None:
    nb = ItemNeighbours(k=2, half_life=NEVER, pair_decay=0.5, capacity=2)
    nb.ensure(6)
    nb.update(np.array([[4]]), np.array([5]), np.array([1.0]), np.ones(1, dtype=np.float32))
    copy = ItemNeighbours.from_state(nb.state(6))
    for a, b in zip(nb.table(6, 2.0), copy.table(6, 2.0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert copy.table(6, 2.0)[0][5].tolist()[0] == 4
