"""The learner: test-then-train on a stream, and checkpoints that restore it exactly."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from support.learning import small_learner_settings

from recengine.config import Settings
from recengine.events import Event, EventBatch
from recengine.trainer.learner import Learner

N_ITEMS = 100
T0 = 1_700_000_000.0


def _settings(**changes: object) -> Settings:
    return small_learner_settings(**changes)


def _sequential_stream(n_users: int = 60, steps: int = 30, seed: int = 0) -> list[Event]:
    """Each user walks the catalogue in order from a random start: after item x comes x + 1.
    Every item is equally popular, so popularity cannot know what comes next; the
    co-occurrence of consecutive items can."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, N_ITEMS, n_users)
    events = []
    for step in range(steps):
        for u in rng.permutation(n_users).tolist():
            item = (starts[u] + step) % N_ITEMS
            t = T0 + step * 60 + u * 0.01
            events.append(Event(f"u{u}", f"i{item}", "view", t, f"c{item % 3}",
                                {"title": f"Item {item}"}))
    return events


def _learn(learner: Learner, events: list[Event], batch: int = 100) -> int:
    evaluated = 0
    for start in range(0, len(events), batch):
        evaluated += learner.learn(EventBatch.from_events(events[start:start + batch])).evaluated
    return evaluated


def test_prequential_evaluation_counts_only_events_of_known_users() -> None:
    learner = Learner(_settings())
    events = _sequential_stream(n_users=30, steps=10)
    evaluated = _learn(learner, events, batch=64)
    # Every event is sampled (eval_sample=1), except each user's very first one.
    assert evaluated == len(events) - 30
    assert learner.tracker.evaluated == evaluated
    assert learner.events == len(events)
    assert 0.0 <= learner.tracker.recall <= 1.0
    assert 0.0 <= learner.tracker.popularity_recall <= 1.0
    rolling, rolling_pop = learner.tracker.rolling()
    assert 0.0 <= rolling <= 1.0 and 0.0 <= rolling_pop <= 1.0


def test_a_users_first_event_in_a_batch_is_not_evaluated_but_later_ones_are() -> None:
    learner = Learner(_settings())
    batch = [Event("new", "i1", "view", T0), Event("new", "i2", "view", T0 + 1),
             Event("new", "i3", "view", T0 + 2)]
    stats = learner.learn(EventBatch.from_events(batch))
    assert stats.events == 3
    assert stats.evaluated == 2


def test_sampling_evaluates_roughly_the_configured_fraction() -> None:
    learner = Learner(_settings(eval_sample=0.25))
    events = _sequential_stream(n_users=40, steps=25)
    evaluated = _learn(learner, events)
    assert 0.15 * len(events) < evaluated < 0.35 * len(events)


def test_learner_beats_popularity_on_a_planted_sequential_structure() -> None:
    learner = Learner(_settings())
    _learn(learner, _sequential_stream())
    t = learner.tracker
    assert t.evaluated > 1000
    assert t.popularity_recall < 0.2  # every item is equally popular
    assert t.recall > t.popularity_recall + 0.3
    assert t.rolling()[0] > 0.6  # late in the stream the next item is nearly always found


def test_recommendations_follow_the_users_last_item_and_skip_seen_ones() -> None:
    learner = Learner(_settings())
    _learn(learner, _sequential_stream())
    row = learner.users.get("u0")
    assert row is not None
    last_item = learner.user_recent(row)[0][0]
    recs = learner.recommend_rows(np.array([row]), 10)[0]
    rec_ids = [learner.items.id(int(r)) for r in recs]
    expected_next = f"i{(int(last_item[1:]) + 1) % N_ITEMS}"
    assert expected_next in rec_ids[:3]
    seen = {learner.items.id(r) for r in learner.seen.of(row)}
    assert not seen & set(rec_ids)


def test_user_recent_lists_items_newest_first_with_their_own_times() -> None:
    learner = Learner(_settings())
    learner.learn(EventBatch.from_events([Event("u", "a", "view", T0)]))
    learner.learn(EventBatch.from_events([Event("u", "b", "view", T0 + 1),
                                          Event("u", "c", "view", T0 + 2),
                                          Event("v", "a", "view", T0 + 3)]))
    row = learner.users.get("u")
    assert row is not None
    assert learner.user_recent(row) == [("c", T0 + 2), ("b", T0 + 1), ("a", T0)]


def test_item_metadata_and_categories_are_recorded() -> None:
    learner = Learner(_settings())
    _learn(learner, _sequential_stream(n_users=20, steps=5))
    row = learner.items.get("i4")
    assert row is not None
    assert learner.item_info[row] == {"title": "Item 4", "category": "c1"}
    popular_c1 = learner.popular(100, "c1")
    assert popular_c1
    assert all(int(item[1:]) % 3 == 1 for item, _ in popular_c1)
    overall = learner.popular(5)
    assert len(overall) == 5
    assert all(a[1] >= b[1] for a, b in pairwise(overall))


def test_tables_grow_with_new_users_and_items() -> None:
    learner = Learner(_settings(initial_users=4, initial_items=4))
    _learn(learner, _sequential_stream(n_users=30, steps=3))
    assert learner.model.user_capacity >= len(learner.users) == 30
    assert learner.model.item_capacity >= len(learner.items)
    assert len(learner.recent.rows) >= 30
    assert len(learner.user_events) >= 30


def test_checkpoint_state_round_trips_to_identical_recommendations() -> None:
    settings = _settings()
    learner = Learner(settings)
    events = _sequential_stream(n_users=40, steps=20)
    _learn(learner, events[:600])
    copy = Learner.from_state(settings, learner.state())
    users = np.arange(len(learner.users))
    np.testing.assert_array_equal(learner.recommend_rows(users, 10),
                                  copy.recommend_rows(users, 10))
    assert copy.popular(20) == learner.popular(20)
    assert copy.users.ids == learner.users.ids and copy.items.ids == learner.items.ids
    assert copy.tracker.state()["hits"] == learner.tracker.hits
    assert [copy.user_recent(r) for r in users] == [learner.user_recent(r) for r in users]
    # And both keep learning the same way from there (same random state, same optimizer).
    rest = EventBatch.from_events(events[600:])
    a, b = learner.learn(rest), copy.learn(rest)
    assert a.evaluated == b.evaluated
    assert copy.tracker.hits == learner.tracker.hits
    np.testing.assert_array_equal(learner.recommend_rows(users, 10),
                                  copy.recommend_rows(users, 10))


def test_empty_batch_changes_nothing() -> None:
    learner = Learner(_settings())
    stats = learner.learn(EventBatch.from_events([]))
    assert (stats.events, stats.evaluated) == (0, 0)
    assert learner.events == 0


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batch_size_does_not_change_what_is_evaluated(batch: int) -> None:
    learner = Learner(_settings())
    events = _sequential_stream(n_users=10, steps=6)
    assert _learn(learner, events, batch=batch) == len(events) - 10
