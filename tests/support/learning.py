"""Settings for a small learner that evaluates every event (learner and baseline tests)."""

from __future__ import annotations

from recengine.config import Settings

SMALL_LEARNER = {"dim": 8, "initial_users": 16, "initial_items": 16, "negatives": 16,
                 "eval_sample": 1.0, "eval_k": 10, "eval_window": 1000, "candidates": 50,
                 "recent_items": 5, "neighbours": 10, "popularity_capacity": 200}


def small_learner_settings(**changes: object) -> Settings:
    """A small, fully evaluated learner's settings, with ``changes`` on top."""
    return Settings.load({**SMALL_LEARNER, **changes}, env={})
