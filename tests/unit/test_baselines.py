"""The honest baseline: plain all-time popularity and decayed popularity, both exact, and
decays on the event clock so a stream's own clock cannot change a ranking."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from support.learning import small_learner_settings

from recengine.config import Settings
from recengine.events import Event, EventBatch
from recengine.popularity import ItemCounts
from recengine.trainer.learner import Learner

T0 = 1_700_000_000.0


def _settings(**changes: object) -> Settings:
    return small_learner_settings(**{"negatives": 4, "eval_k": 2, "candidates": 10, **changes})


def test_all_time_counts_are_exact_and_ties_go_to_the_lower_row() -> None:
    counts = ItemCounts(half_life=10.0, capacity=4)
    rows = np.array([3, 1, 2, 1, 3, 0, 5])
    counts.ensure(6)
    counts.update(rows, np.arange(len(rows), dtype=np.float64))
    np.testing.assert_array_equal(counts.total[:6], [1, 2, 1, 2, 0, 1])
    # 1 and 3 tie at two events: the lower row first; 4 was never counted.
    assert counts.ranking("all", 6, 10).tolist() == [1, 3, 0, 2, 5]
    assert counts.ranking("all", 6, 2).tolist() == [1, 3]


def test_decayed_counts_halve_every_half_life_of_events() -> None:
    counts = ItemCounts(half_life=2.0, capacity=2)
    counts.update(np.array([0, 1, 1]), np.array([0.0, 4.0, 4.0]))
    # At event 4: item 0's count is one event four events (two half-lives) old.
    now = np.exp2((counts.t_ref - 4.0) / 2.0)
    np.testing.assert_allclose(counts.decayed[:2] * now, [0.25, 2.0])
    assert counts.ranking("decayed", 2, 2).tolist() == [1, 0]
    copy = ItemCounts.from_state(counts.state(2))
    np.testing.assert_array_equal(copy.decayed[:2], counts.decayed[:2])


def test_the_plain_baseline_counts_hits_exactly_on_a_small_stream() -> None:
    # Popularity by then: a (3 events) > b (2) > c (1). Users u1 and u2 are evaluated on
    # their second event; k = 2.
    events = [Event("x", "a", "view", T0), Event("y", "a", "view", T0 + 1),
              Event("z", "a", "view", T0 + 2), Event("x", "b", "view", T0 + 3),
              Event("y", "b", "view", T0 + 4), Event("x", "c", "view", T0 + 5),
              Event("u1", "a", "view", T0 + 6), Event("u1", "c", "view", T0 + 7),
              Event("u2", "b", "view", T0 + 8), Event("u2", "a", "view", T0 + 9)]
    learner = Learner(_settings())
    for e in events:  # one event per micro-batch: exact test-then-learn
        learner.learn(EventBatch.from_events([e]))
    tr = learner.tracker
    # Evaluated (users seen before): x->b (b never seen: a miss), y->b (a excluded: [b]: hit),
    # x->c (new item: miss), u1->c (a excluded: [b, c]: hit), u2->a (b and c tie at two
    # events, b excluded: [a, c]: hit).
    assert tr.evaluated == 5
    assert tr.plain_hits == 3
    assert tr.ring[:5, 1].tolist() == [0, 1, 0, 1, 1]
    assert tr.popularity_recall == max(tr.plain_popularity_recall,
                                       tr.decayed_popularity_recall)


def _stream(scale: float, offset: float) -> list[Event]:
    rng = np.random.default_rng(0)
    events = []
    for n in range(1500):
        u = int(rng.integers(40))
        item = (u * 7 + n // 40 + int(rng.integers(3))) % 60
        events.append(Event(f"u{u}", f"i{item}", "view", offset + scale * n))
    return events


def test_the_same_stream_at_two_clocks_ranks_and_scores_the_same() -> None:
    """Events a second apart or a day apart, starting in 1990 or in 2030: the decays count
    events, so the learned rankings and every recall figure are identical."""
    settings = _settings(popularity_half_life_events=200.0, cooc_half_life_events=300.0)
    results = []
    for scale, offset in ((1.0, T0), (86400.0, 6.3e8)):
        learner = Learner(settings)
        events = _stream(scale, offset)
        for start in range(0, len(events), 50):
            learner.learn(EventBatch.from_events(events[start:start + 50]))
        users = np.arange(len(learner.users))
        results.append((learner.recommend_rows(users, 5), learner.tracker.state(),
                        learner.tuner.state(), learner.popular(10)))
    (rec_a, tr_a, tu_a, pop_a), (rec_b, tr_b, tu_b, pop_b) = results
    np.testing.assert_array_equal(rec_a, rec_b)
    assert {k: v for k, v in tr_a.items() if k != "ring"} == {
        k: v for k, v in tr_b.items() if k != "ring"}
    np.testing.assert_array_equal(tr_a["ring"], tr_b["ring"])
    assert tu_a == tu_b
    assert [i for i, _ in pop_a] == [i for i, _ in pop_b]


def test_a_far_future_timestamp_does_not_silence_popularity() -> None:
    learner = Learner(_settings())
    events = [Event(f"u{n % 5}", f"i{n % 7}", "view", T0 + n) for n in range(200)]
    learner.learn(EventBatch.from_events(events[:100]))
    learner.learn(EventBatch.from_events([replace(events[100], ts=99999999999.0)]))
    learner.learn(EventBatch.from_events(events[101:]))
    top = learner.popular(3)
    assert all(count > 0 for _, count in top)
    _, w = learner.neighbours.normalised(np.arange(7))
    assert (w > 0).any()
