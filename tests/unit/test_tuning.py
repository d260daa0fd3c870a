"""Self-tuning: a raced population converges to the best ranking and does not flap."""

from __future__ import annotations

import numpy as np

from recengine.ranking import RankingParams
from recengine.tuning import SelfTuner, neighbours_of

BASE = RankingParams(0.8, 20, 0.05, 0.02, "all")


def _race(tuner: SelfTuner, recall_of, rounds: int, rng: np.random.Generator,
          batch: int = 200) -> list[RankingParams]:
    """Feed the tuner hits drawn from each ranking's true recall; returns the incumbents."""
    incumbents = []
    for _ in range(rounds):
        p = np.array([recall_of(x) for x in tuner.population])
        # Shared events: one uniform draw per event, so rankings with close recall agree on
        # most events (as rankings of one state do).
        u = rng.random((batch, 1))
        tuner.observe((u < p[None, :]).astype(np.int8))
        incumbents.append(tuner.current)
    return incumbents


def test_the_tuner_climbs_to_the_planted_best_ranking() -> None:
    best = RankingParams(0.5, 20, 0.0, 0.2, "decayed")

    def recall_of(x: RankingParams) -> float:
        # One peak at ``best``: every step away on the grid costs recall.
        miss = (abs(x.recency_decay - best.recency_decay) + abs(x.blend - best.blend)
                + abs(x.pop_blend - best.pop_blend) + (x.pop_source != best.pop_source) * 0.1)
        return max(0.02, 0.2 - 0.3 * miss)

    tuner = SelfTuner.start(BASE, 8, 20, seed=1, min_evaluated=1000, z=3.0)
    _race(tuner, recall_of, 1500, np.random.default_rng(0))
    assert tuner.current == best
    assert len(tuner.switches) >= 3
    assert all(s["z"] >= 3.0 for s in tuner.switches)


def test_equal_rankings_never_replace_the_one_in_force() -> None:
    tuner = SelfTuner.start(BASE, 8, 20, seed=2, min_evaluated=500, z=3.0)
    incumbents = _race(tuner, lambda x: 0.1, 2000, np.random.default_rng(1))
    assert set(incumbents) == {BASE}
    assert tuner.switches == []


def test_a_slightly_better_ranking_within_the_margin_does_not_cause_flapping() -> None:
    # Two rankings 0.5% apart (relative) alternate as the better one: with hysteresis the
    # one in force stays.
    other = neighbours_of(BASE, 20)[0]
    tuner = SelfTuner([BASE, other], 20, min_evaluated=500, z=3.0, margin=0.01)
    rng = np.random.default_rng(3)
    for round_ in range(400):
        lead = 0.1005 if (round_ // 50) % 2 else 0.0995
        _race(tuner, lambda x, lead=lead: lead if x == other else 0.1, 1, rng)
    assert tuner.switches == []


def test_a_clearly_worse_challenger_is_replaced_by_a_neighbour_of_the_incumbent() -> None:
    tuner = SelfTuner.start(BASE, 3, 20, seed=4, min_evaluated=300, z=3.0)
    worst = tuner.population[2]
    _race(tuner, lambda x: 0.02 if x == worst else 0.2, 30, np.random.default_rng(5))
    assert worst not in tuner.population
    assert tuner.population[2] in neighbours_of(tuner.current, 20)
    assert tuner.current == BASE


def test_the_tuner_restores_exactly_from_its_state() -> None:
    tuner = SelfTuner.start(BASE, 6, 20, seed=6, min_evaluated=200)
    rng = np.random.default_rng(7)
    _race(tuner, lambda x: 0.05 + 0.1 * x.pop_blend, 40, rng)
    copy = SelfTuner.from_state(tuner.state())
    assert copy.state() == tuner.state()
    a, b = np.random.default_rng(8), np.random.default_rng(8)
    _race(tuner, lambda x: 0.05 + 0.1 * x.pop_blend, 40, a)
    _race(copy, lambda x: 0.05 + 0.1 * x.pop_blend, 40, b)
    assert copy.state() == tuner.state()


def test_a_disabled_tuner_races_nothing_and_serves_the_initial_ranking() -> None:
    tuner = SelfTuner.start(BASE, 8, 20, enabled=False)
    assert tuner.population == [BASE]
    tuner.observe(np.ones((10, 1), dtype=np.int8))
    assert tuner.current == BASE
    assert tuner.recall(0) == 1.0


def test_recent_used_never_exceeds_what_the_trainer_keeps() -> None:
    tuner = SelfTuner.start(RankingParams(recent_used=40), 8, 12, seed=9)
    assert all(p.recent_used <= 12 for p in tuner.population)
    assert all(p.recent_used <= 12 for p in neighbours_of(RankingParams(recent_used=12), 12))
