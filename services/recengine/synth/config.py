"""``SynthConfig``: every knob of the synthetic stream, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
"""The event types the generator emits, from the most to the least frequent."""

CATEGORY_NAMES: tuple[str, ...] = (
    "action", "drama", "comedy", "thriller", "sci-fi", "romance", "horror", "documentary",
    "animation", "fantasy", "crime", "family", "music", "sports", "mystery", "history",
    "adventure", "western", "war", "biography", "musical", "anime", "indie", "reality",
    "travel", "cooking", "fitness", "science", "nature", "news",
)  # fmt: skip
"""Category names; configs with more categories get ``category-<n>`` for the rest."""

TIME_SCALES: dict[str, float] = {
    "seconds": 1.0, "minutes": 60.0, "hours": 3_600.0, "days": 86_400.0,
}  # fmt: skip
"""Named time scales: the mean seconds between consecutive events of the whole stream."""

_LAST_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the latest time an event may carry
#: Generated streams end by this time (2025-06-15), so none runs into the future, which the
#: trainer refuses (``event_max_future_s``); fixed, not "now", so a seed's stream never changes.
LATEST_END_TS = 1_750_000_000.0
#: Where a default stream starts (2023-11-14) when that ends it before ``LATEST_END_TS``.
DEFAULT_START_TS = 1_700_000_000.0
WORLD_DAY = 86_400.0
"""Seconds of a day on the world's own clock (sessions, releases, diurnal cycle, drift)."""


def parse_time_scale(text: str) -> str | float:
    """A ``--time-scale`` argument: a name of ``TIME_SCALES`` or a number of seconds."""
    if text in TIME_SCALES:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"time scale must be one of {', '.join(TIME_SCALES)} or seconds, got {text!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"time scale must be a positive number of seconds, got {text!r}")
    return value


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic stream. Defaults are the calibrated ones.

    The first block is what callers normally change; the rest shapes the behaviour and is
    calibrated (see the package docstring and docs/generator.md) - change it knowingly.
    Durations are on the world's own clock (see ``events_per_day`` and ``time_scale``).
    """

    events: int = 200_000
    """Number of valid events to emit (malformed lines come on top of these)."""
    users: int = 5_000
    """Users that exist by the end of the stream (they arrive over time)."""
    items: int = 3_000
    """Items that exist by the end of the stream (they are released over time)."""
    clusters: int = 12
    """Latent taste clusters."""
    categories: int = 16
    """Named item categories, tied to the clusters."""
    malformed_rate: float = 0.005
    """Expected share of malformed lines among all lines."""
    seed: int = 7
    start_ts: float | None = None
    """Epoch seconds of the stream start. ``None`` (the default): ``DEFAULT_START_TS``, or
    earlier when a stream this long at this ``time_scale`` would then end after
    ``LATEST_END_TS`` (:attr:`first_ts`). A number is used as given."""
    time_scale: str | float = "seconds"
    """Mean seconds between consecutive events of the whole stream: ``seconds``, ``minutes``,
    ``hours``, ``days`` (1, 60, 3600, 86400) or a number. It only maps the world's clock onto
    timestamps: the same config at two time scales yields the same events with every
    ``ts - start_ts`` multiplied by the ratio of the scales."""

    events_per_day: float = 30_000.0
    """Events per day of the world's own clock: how many world days the stream spans, so
    how many diurnal cycles, release bursts and how much drift it sees (200k events ~ 6.7
    days). ``time_scale`` then sets how long a world day lasts in timestamps."""
    initial_user_share: float = 0.3
    """Share of the users that already exist at the start."""
    initial_item_share: float = 0.6
    """Share of the items that are already released at the start."""
    activity_sigma: float = 1.7
    """Log-normal spread of the users' activity: long and short histories."""
    zipf_exponent: float = 0.9
    """Exponent of the Zipf law of base item popularity."""
    taste_concentration: float = 0.6
    """Dirichlet concentration per cluster of the users' mixtures (small = few clusters)."""
    mean_session_steps: float = 7.0
    """Mean number of items consumed in a session (geometric)."""
    walk_prob: float = 0.08
    """Probability that the next item is a neighbour of the previous one in the sequence."""
    walk_forward_prob: float = 0.75
    """Probability that a sequence step goes forward rather than backward."""
    walk_width: int = 3
    """Largest sequence offset of a step."""
    switch_prob: float = 0.1
    """Probability that the next item comes from another cluster of the user's mixture."""
    backtrack_prob: float = 0.03
    """Probability that the next item is the one before the previous one (going back)."""
    mainstream_prob: float = 0.05
    """Probability that a session start or a next item is drawn by global popularity."""
    resume_prob: float = 0.2
    """Probability that a session continues the sequence where the user's last one ended."""
    release_burst: float = 2.0
    """Extra popularity multiplier of a newly released item, decaying over ``burst_days``
    world days."""
    burst_days: float = 1.0
    drift: float = 0.25
    """Strength of cluster-popularity oscillation and of user-taste drift (0 = none)."""
    event_type_probs: tuple[float, float, float, float] = (0.82, 0.11, 0.045, 0.025)
    """Probabilities of the deepest funnel stage of a step: view, click, cart, purchase."""
    preview_prob: float = 0.6
    """Probability that a cart/purchase step is preceded by a view event of the same item."""
    step_gap_median: float = 45.0
    """Median world seconds between two items of a session (log-normal)."""
    metadata_rate: float = 0.1
    """Share of an item's later events that repeat its category and metadata."""

    @property
    def mean_gap_s(self) -> float:
        """Mean seconds between consecutive events, ``time_scale`` resolved."""
        scale = self.time_scale
        return TIME_SCALES[scale] if isinstance(scale, str) else float(scale)

    @property
    def first_ts(self) -> float:
        """The stream's first timestamp: ``start_ts`` when given, else ``DEFAULT_START_TS`` or
        earlier, so that the stream (its expected span, with a fifth to spare) ends before
        ``LATEST_END_TS``."""
        if self.start_ts is not None:
            return self.start_ts
        return min(DEFAULT_START_TS, LATEST_END_TS - 1.2 * self.events * self.mean_gap_s)

    @property
    def clock(self) -> float:
        """Timestamp seconds per second of the world's clock."""
        return self.mean_gap_s * self.events_per_day / WORLD_DAY

    def __post_init__(self) -> None:
        positive_ints = ("events", "users", "items", "clusters", "categories", "walk_width")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        shares = (
            "malformed_rate", "initial_user_share", "initial_item_share", "walk_prob",
            "walk_forward_prob", "switch_prob", "backtrack_prob", "mainstream_prob", "resume_prob",
            "preview_prob", "metadata_rate",
        )  # fmt: skip
        for name in shares:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.malformed_rate >= 0.5:
            raise ValueError("malformed_rate must be < 0.5")
        step_probs = self.walk_prob + self.switch_prob + self.backtrack_prob + self.mainstream_prob
        if step_probs > 1.0:
            raise ValueError(
                "walk_prob + switch_prob + backtrack_prob + mainstream_prob must be <= 1"
            )
        positive_floats = (
            "events_per_day", "activity_sigma", "zipf_exponent", "taste_concentration",
            "burst_days", "step_gap_median",
        )  # fmt: skip
        for name in positive_floats:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        scale = self.time_scale
        if isinstance(scale, str):
            if scale not in TIME_SCALES:
                raise ValueError(f"time_scale must be one of {', '.join(TIME_SCALES)} or seconds")
        elif isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"time_scale must be a name or a number, got {scale!r}")
        elif not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"time_scale must be a positive number of seconds, got {scale!r}")
        if self.first_ts + 2 * self.events * self.mean_gap_s > _LAST_TS:
            raise ValueError("the stream would run past the year 9999: shorten the time_scale")
        if self.first_ts < 0:
            raise ValueError(f"{self.events} events {self.mean_gap_s:g} s apart would have to "
                             "start before 1970 to end in the past: fewer events or a shorter "
                             "time_scale")
        if self.mean_session_steps < 1.0:
            raise ValueError("mean_session_steps must be >= 1")
        if self.release_burst < 0 or self.drift < 0:
            raise ValueError("release_burst and drift must be >= 0")
        if self.start_ts is not None and not (math.isfinite(self.start_ts)
                                              and self.start_ts >= 0):
            raise ValueError("start_ts must be a finite number >= 0")
        probs = self.event_type_probs
        if len(probs) != len(EVENT_TYPES) or min(probs) < 0 or not math.isclose(sum(probs), 1):
            raise ValueError("event_type_probs must be 4 non-negative numbers summing to 1")

