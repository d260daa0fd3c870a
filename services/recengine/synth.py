"""Deterministic synthetic interaction stream for the demo, the tests and the benchmarks.

The generator simulates a catalogue and a user base that both grow over time and emits
implicit-feedback events in time order. It is calibrated so that learners rank on it the
way they do on real data replayed in time order (MovieLens, test-then-train, recall@10
over all items seen so far minus the user's own items): all-time popularity is a strong
baseline, a BPR matrix factorisation beats it moderately, and an item-to-item
co-occurrence signal built from the user's last few items beats it clearly.

Structure of the simulated world (everything is a pure function of ``SynthConfig``):

* **Taste clusters.** Every item belongs to one of ``clusters`` latent clusters and has a
  position in its cluster's latent sequence (think series, sequels, "more like this"
  shelves). Cluster sizes and item popularity are Zipf-like. Every user has a sparse
  mixture over the clusters.
* **Categories.** ``categories`` named categories ("action", "drama", ...) are tied to the
  clusters: an item's category is mostly its cluster's main category.
* **Sessions.** Users act in sessions. A session starts with a popular item of a cluster
  drawn from the user's mixture (or a globally popular item, or the next item in the
  sequence where the user's previous session ended); each next item is a neighbour of
  the previous one in the latent sequence (forward more often than backward), a popular
  item of the same cluster, a popular item of another cluster of the user, a globally
  popular item, or a step back to the item before. So item-to-item co-occurrence carries
  real signal. Users rarely re-consume an item (their last 64 items are avoided, except
  for going back and for the view that precedes a purchase). Sessions are separated by
  hours to days; within a session items are tens of seconds apart. Session starts follow
  a day/night cycle.
* **Growth and drift.** Users arrive over time (each newcomer starts a session when it
  arrives), items are released over time and get a popularity burst on release, cluster
  popularity oscillates slowly and each user's mixture drifts towards a second mixture
  over the stream.
* **Event types.** Each step is a ``view`` (most), ``click``, ``add_to_cart`` or
  ``purchase``; most carts and purchases are preceded by a view of the same item.
* **Malformed lines.** About ``malformed_rate`` of the lines are broken in one of several
  ways (see ``MALFORMED_KINDS``); each of them is invalid per the event schema.

A valid event is a dict ``{"user_id": "u123", "item_id": "i456", "event": "view",
"ts": 1700000123.25}``; on an item's first appearance in the stream, and on a random
``metadata_rate`` share of its later events, it also carries ``"category"`` and
``"metadata": {"title": ..., "price": ...}``. Timestamps are epoch seconds (float, two
decimals), non-decreasing, starting at ``start_ts``.

Typical use::

    from recengine.synth import SynthConfig, generate, write_stream

    for rec in generate(SynthConfig(events=10_000, seed=1)):
        if isinstance(rec, str):
            ...  # a malformed line, as the raw text a producer would have sent
        else:
            ...  # a valid event dict

    write_stream("demo-data/events.jsonl", SynthConfig())
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CATEGORY_NAMES",
    "EVENT_TYPES",
    "MALFORMED_KINDS",
    "MAX_ID_LENGTH",
    "SynthConfig",
    "SynthSummary",
    "catalog",
    "generate",
    "write_stream",
]

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
"""The event types the generator emits, from the most to the least frequent."""

CATEGORY_NAMES: tuple[str, ...] = (
    "action", "drama", "comedy", "thriller", "sci-fi", "romance", "horror", "documentary",
    "animation", "fantasy", "crime", "family", "music", "sports", "mystery", "history",
    "adventure", "western", "war", "biography", "musical", "anime", "indie", "reality",
    "travel", "cooking", "fitness", "science", "nature", "news",
)  # fmt: skip
"""Category names; configs with more categories get ``category-<n>`` for the rest."""

MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",  # a truncated JSON object
    "not_an_object",  # valid JSON, but an array / number / string instead of an object
    "missing_user_id",
    "empty_item_id",
    "list_user_id",  # user_id is a JSON array
    "long_id",  # user_id or item_id longer than MAX_ID_LENGTH
    "nonnumeric_ts",  # ts is a non-numeric string or null
    "negative_ts",
    "bad_event_type",  # event is a number or null (unknown *strings* are valid)
)
"""Kinds of malformed lines, drawn uniformly."""

MAX_ID_LENGTH = 256
"""Longest valid user_id / item_id; malformed ``long_id`` lines exceed it."""

_DAY = 86_400.0
_WINDOW = 3_600.0  # sessions are generated one hour of stream time at a time
_DIURNAL_AMPLITUDE = 0.5
_STAGE_DELAY = (5.0, 90.0)  # seconds between the view and the cart/purchase of an item
_RECENT = 64  # items per user remembered to avoid re-consumption
_REPEAT_RETRIES = 4  # draws tried before a re-consumption is accepted

_ADJECTIVES = (
    "Silent", "Golden", "Broken", "Hidden", "Last", "Crimson", "Electric", "Wild", "Frozen",
    "Lucky", "Midnight", "Velvet", "Iron", "Paper", "Lost", "Bright", "Secret", "Little",
    "Northern", "Burning", "Quiet", "Royal", "Distant", "Hollow",
)  # fmt: skip
_NOUNS = (
    "River", "Empire", "Garden", "Signal", "Harbor", "Machine", "Kingdom", "Orchard",
    "Horizon", "Mirror", "Lantern", "Voyage", "Citadel", "Echo", "Frontier", "Station",
    "Canyon", "Circus", "Archive", "Meadow", "Tower", "Island", "Comet", "Bridge",
)  # fmt: skip


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic stream. Defaults are the calibrated ones.

    The first block is what callers normally change; the rest shapes the behaviour and is
    calibrated (see the module docstring) - change it knowingly.
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
    start_ts: float = 1_700_000_000.0
    """Epoch seconds of the stream start; all timestamps are >= this."""

    events_per_day: float = 30_000.0
    """Average stream rate; sets the time span (200k events ~ 6.7 days)."""
    initial_user_share: float = 0.3
    """Share of the users that already exist at the start."""
    initial_item_share: float = 0.6
    """Share of the items that are already released at the start."""
    zipf_exponent: float = 1.0
    """Exponent of the Zipf law of base item popularity."""
    taste_concentration: float = 0.6
    """Dirichlet concentration per cluster of the users' mixtures (small = few clusters)."""
    mean_session_steps: float = 7.0
    """Mean number of items consumed in a session (geometric)."""
    walk_prob: float = 0.25
    """Probability that the next item is a neighbour of the previous one in the sequence."""
    walk_forward_prob: float = 0.75
    """Probability that a sequence step goes forward rather than backward."""
    walk_width: int = 3
    """Largest sequence offset of a step."""
    switch_prob: float = 0.1
    """Probability that the next item comes from another cluster of the user's mixture."""
    backtrack_prob: float = 0.03
    """Probability that the next item is the one before the previous one (going back)."""
    mainstream_prob: float = 0.06
    """Probability that a session start or a next item is drawn by global popularity."""
    resume_prob: float = 0.3
    """Probability that a session continues the sequence where the user's last one ended."""
    release_burst: float = 5.0
    """Extra popularity multiplier of a newly released item, decaying with ``burst_days``."""
    burst_days: float = 1.0
    drift: float = 0.5
    """Strength of cluster-popularity oscillation and of user-taste drift (0 = none)."""
    event_type_probs: tuple[float, float, float, float] = (0.82, 0.11, 0.045, 0.025)
    """Probabilities of the deepest funnel stage of a step: view, click, cart, purchase."""
    preview_prob: float = 0.6
    """Probability that a cart/purchase step is preceded by a view event of the same item."""
    step_gap_median: float = 45.0
    """Median seconds between two items of a session (log-normal)."""
    metadata_rate: float = 0.1
    """Share of an item's later events that repeat its category and metadata."""

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
            "events_per_day", "zipf_exponent", "taste_concentration", "burst_days",
            "step_gap_median",
        )  # fmt: skip
        for name in positive_floats:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.mean_session_steps < 1.0:
            raise ValueError("mean_session_steps must be >= 1")
        if self.release_burst < 0 or self.drift < 0:
            raise ValueError("release_burst and drift must be >= 0")
        if not (math.isfinite(self.start_ts) and self.start_ts >= 0):
            raise ValueError("start_ts must be a finite number >= 0")
        probs = self.event_type_probs
        if len(probs) != len(EVENT_TYPES) or min(probs) < 0 or not math.isclose(sum(probs), 1):
            raise ValueError("event_type_probs must be 4 non-negative numbers summing to 1")


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_stream`` wrote."""

    path: str
    fmt: str
    events: int
    """Valid events written."""
    malformed: int
    """Malformed lines written (always 0 for tsv)."""
    users: int
    """Distinct users in the valid events."""
    items: int
    """Distinct items in the valid events."""
    first_ts: float
    last_ts: float


# --------------------------------------------------------------------------------------
# The simulated world
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Malformed:
    """A malformed record: its kind, the valid event it was derived from, a random draw."""

    kind: str
    base: dict[str, Any]
    u: float


def _category_names(n: int) -> list[str]:
    names = list(CATEGORY_NAMES[:n])
    names += [f"category-{k + 1}" for k in range(len(names), n)]
    return names


class _World:
    """Static structure: clusters, items, users, and the time-dependent weights."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        k, n_items, n_users = cfg.clusters, cfg.items, cfg.users
        self.horizon = cfg.events / cfg.events_per_day * _DAY

        # Clusters: Zipf-like sizes.
        size = (np.arange(k) + 1.0) ** -0.7
        self.cluster_share = rng.permutation(size / size.sum())

        # Items: cluster (every cluster non-empty when possible), popularity, release.
        cluster = rng.choice(k, size=n_items, p=self.cluster_share)
        cover = min(k, n_items)
        cluster[:cover] = rng.permutation(k)[:cover]
        self.item_cluster = rng.permutation(cluster)
        rank = rng.permutation(n_items)
        self.item_pop = (rank + 1.0) ** -cfg.zipf_exponent
        n0 = max(1, round(cfg.initial_item_share * n_items))
        release = np.full(n_items, -1e12)
        release[n0:] = np.sort(rng.uniform(0.0, 0.97 * self.horizon, n_items - n0))
        self.item_release = release[rng.permutation(n_items)]

        # Latent sequences: items sorted by (cluster, random position).
        self.seq = np.lexsort((rng.random(n_items), self.item_cluster))
        self.seq_pos = np.empty(n_items, dtype=np.int64)
        self.seq_pos[self.seq] = np.arange(n_items)
        seq_cluster = self.item_cluster[self.seq]
        self.lo = np.searchsorted(seq_cluster, np.arange(k), side="left")
        self.hi = np.searchsorted(seq_cluster, np.arange(k), side="right")
        self.n_in_cluster = self.hi - self.lo
        self.seq_release = self.item_release[self.seq]
        self.seq_pop = self.item_pop[self.seq]

        # Categories tied to clusters, titles, prices.
        names = _category_names(cfg.categories)
        self.category_names = names
        m = cfg.categories
        main = np.arange(k) % m
        secondary: list[list[int]] = [list(range(k + c, m, k)) for c in range(k)]
        cat = main[self.item_cluster].copy()
        r = rng.random(n_items)
        pick = rng.integers(0, 1 << 30, n_items)
        for i in np.flatnonzero(r < 0.25):
            sec = secondary[self.item_cluster[i]]
            if sec:
                cat[i] = sec[pick[i] % len(sec)]
        stray = r > 0.95
        cat[stray] = rng.integers(0, m, int(stray.sum()))
        self.item_category = cat
        base_price = np.exp(rng.normal(2.8, 0.6, m))
        price = base_price[cat] * np.exp(rng.normal(0.0, 0.4, n_items))
        self.item_price = np.round(price, 2)
        adj = rng.integers(0, len(_ADJECTIVES), n_items)
        noun = rng.integers(0, len(_NOUNS), n_items)
        part = rng.integers(1, 6, n_items)
        self.item_title = [
            f"{_ADJECTIVES[a]} {_NOUNS[b]}" + (f" {p}" if p > 1 else "")
            for a, b, p in zip(adj.tolist(), noun.tolist(), part.tolist(), strict=True)
        ]
        self.item_ids = [f"i{x}" for x in (rng.permutation(n_items) + 1).tolist()]

        # Users, indexed by arrival order.
        n0u = round(cfg.initial_user_share * n_users)
        arrival = np.full(n_users, -1.0)
        arrival[n0u:] = np.sort(rng.uniform(0.0, 0.97 * self.horizon, n_users - n0u))
        self.user_arrival = arrival
        self.user_activity_cum = np.cumsum(np.exp(rng.normal(0.0, 1.0, n_users)))
        alpha = cfg.taste_concentration * k * self.cluster_share
        self.taste0 = self._dirichlet(rng, alpha, n_users)
        self.taste1 = self._dirichlet(rng, alpha, n_users)
        self.user_ids = [f"u{x}" for x in (rng.permutation(n_users) + 1).tolist()]
        self.last_item = np.full(n_users, -1, dtype=np.int64)

        # Slow oscillation of cluster popularity.
        self.cluster_freq = rng.uniform(0.5, 1.5, k)
        self.cluster_phase = rng.uniform(0.0, 2 * np.pi, k)
        self.diurnal_phase = rng.uniform(0.0, 2 * np.pi)

        # Walk offsets: 1..width, probability ~ 1/offset^1.5.
        w = (np.arange(cfg.walk_width) + 1.0) ** -1.5
        self.offset_cum = np.cumsum(w / w.sum())

        # Per-window state (item weights at the current stream time), see ``set_time``.
        self.now = 0.0
        self.set_time(0.0)

    @staticmethod
    def _dirichlet(rng: np.random.Generator, alpha: np.ndarray, n: int) -> np.ndarray:
        g = rng.gamma(alpha, size=(n, alpha.size)) + 1e-12
        return g / g.sum(axis=1, keepdims=True)

    def set_time(self, t: float) -> None:
        """Recompute the time-dependent item weights for stream time ``t`` (seconds)."""
        self.now = t
        age = t - self.seq_release
        released = age >= 0
        burst = 1.0 + self.cfg.release_burst * np.exp(
            -np.maximum(age, 0.0) / (self.cfg.burst_days * _DAY)
        )
        weight = np.where(released, self.seq_pop * burst, 0.0)
        self.seq_cum = np.cumsum(weight)
        idx = np.where(released, np.arange(weight.size), -1)
        self.seq_lastpos = np.maximum.accumulate(idx)
        avail = np.zeros(self.cfg.clusters)
        nonempty = self.n_in_cluster > 0
        avail[nonempty] = self.seq_lastpos[self.hi[nonempty] - 1] >= self.lo[nonempty]
        phase = 2 * np.pi * self.cluster_freq * t / self.horizon + self.cluster_phase
        self.cluster_avail = avail * np.exp(self.cfg.drift * np.sin(phase))
        # Per-cluster slices of the cumulative weights, for draw_popular / draw_global.
        last = np.maximum(self.hi - 1, 0)
        self.c_base = np.where(self.lo > 0, self.seq_cum[np.maximum(self.lo - 1, 0)], 0.0)
        self.c_span = np.where(nonempty, self.seq_cum[last] - self.c_base, 0.0)
        self.c_last = self.seq_lastpos[last]
        self.c_global = np.cumsum(self.c_span * self.cluster_avail)

    def released(self, items: np.ndarray) -> np.ndarray:
        return self.item_release[items] <= self.now

    def diurnal(self, t: np.ndarray) -> np.ndarray:
        """Relative session-start intensity at stream times ``t`` (mean 1)."""
        return 1.0 + _DIURNAL_AMPLITUDE * np.sin(2 * np.pi * t / _DAY + self.diurnal_phase)

    def draw_popular(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One released item per entry of ``clusters``, by current popularity."""
        x = self.c_base[clusters] + rng.random(clusters.size) * self.c_span[clusters]
        pos = np.searchsorted(self.seq_cum, x, side="right")
        return self.seq[np.minimum(pos, self.c_last[clusters])]

    def draw_global(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` released items by current global popularity (cluster drift included)."""
        ccum = self.c_global
        c = np.searchsorted(ccum, rng.random(n) * ccum[-1], side="right")
        return self.draw_popular(np.minimum(c, self.cfg.clusters - 1), rng)

    def draw_cluster(
        self, users: np.ndarray, rng: np.random.Generator, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        """A cluster per user from its drifting mixture and the clusters' current weight."""
        lam = np.clip(self.cfg.drift * (self.now - self.user_arrival[users]) / self.horizon,
                      0.0, 1.0)[:, None]  # fmt: skip
        p = ((1.0 - lam) * self.taste0[users] + lam * self.taste1[users]) * self.cluster_avail
        if exclude is not None:
            alt = p.copy()
            alt[np.arange(users.size), exclude] = 0.0
            ok = alt.sum(axis=1) > 0
            p[ok] = alt[ok]
        cum = np.cumsum(p, axis=1)
        x = rng.random(users.size) * cum[:, -1]
        c = (cum <= x[:, None]).sum(axis=1)
        return np.minimum(c, self.cfg.clusters - 1)

    def neighbour(
        self, items: np.ndarray, rng: np.random.Generator, forward: np.ndarray | None = None
    ) -> np.ndarray:
        """A neighbour of each item in its cluster's latent sequence (may be unreleased)."""
        c = self.item_cluster[items]
        lo, n = self.lo[c], self.n_in_cluster[c]
        off = np.searchsorted(self.offset_cum, rng.random(items.size), side="right") + 1
        if forward is None:
            forward = rng.random(items.size) < self.cfg.walk_forward_prob
        off = np.where(forward, off, -off)
        return self.seq[lo + (self.seq_pos[items] - lo + off) % n]


# --------------------------------------------------------------------------------------
# Session simulation
# --------------------------------------------------------------------------------------


class _Simulator:
    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.world = _World(cfg, self.rng)
        w = self.world
        steps_per_session = cfg.mean_session_steps
        p = cfg.event_type_probs
        events_per_step = 1.0 + cfg.preview_prob * (p[2] + p[3])
        total_sessions = cfg.events / (steps_per_session * events_per_step)
        forced = int((w.user_arrival >= 0).sum())
        self.session_rate = max(total_sessions - forced, 0.2 * total_sessions) / w.horizon
        self.next_arrival = int(np.searchsorted(w.user_arrival, 0.0, side="left"))
        self.etype_cum = np.cumsum(p)
        self.gap_mu = math.log(cfg.step_gap_median)
        self.malformed_odds = cfg.malformed_rate / (1.0 - cfg.malformed_rate)
        self.recent = np.full((cfg.users, _RECENT), -1, dtype=np.int32)
        self.recent_ptr = np.zeros(cfg.users, dtype=np.int64)

    def window(self, ws: float) -> dict[str, np.ndarray]:
        """Events of the sessions starting in [ws, ws + _WINDOW), unsorted."""
        w, rng = self.world, self.rng
        we = ws + _WINDOW
        w.set_time(ws)

        # Regular sessions: thinned Poisson process, users by activity among arrived ones.
        n_cand = rng.poisson(self.session_rate * _WINDOW * (1.0 + _DIURNAL_AMPLITUDE))
        t = ws + rng.random(n_cand) * _WINDOW
        keep = rng.random(n_cand) * (1.0 + _DIURNAL_AMPLITUDE) < w.diurnal(t)
        t = t[keep]
        n_arrived = int(np.searchsorted(w.user_arrival, ws, side="right"))
        if n_arrived == 0:
            t = t[:0]
        cum = w.user_activity_cum
        total = cum[n_arrived - 1] if n_arrived else 0.0
        users = np.searchsorted(cum, rng.random(t.size) * total, side="right")
        users = np.minimum(users, max(n_arrived - 1, 0))

        # Newcomers start a session when they arrive.
        end = int(np.searchsorted(w.user_arrival, we, side="left"))
        new_users = np.arange(self.next_arrival, end)
        self.next_arrival = end
        starts = np.concatenate([t, w.user_arrival[new_users]])
        users = np.concatenate([users, new_users]).astype(np.int64)
        order = np.argsort(starts, kind="stable")
        starts, users = starts[order], users[order]
        return self._sessions(users, starts)

    def _avoid_repeats(
        self, users: np.ndarray, items: np.ndarray, walked: np.ndarray
    ) -> np.ndarray:
        """Replace items the user consumed recently, like people rarely re-watch or re-buy.

        A walked item is replaced by the next one in the sequence (skip what was seen),
        any other by a new popular draw from its cluster; after a few tries a repeat stays.
        """
        w, rng = self.world, self.rng
        items = items.copy()
        for _ in range(_REPEAT_RETRIES):
            dup = np.flatnonzero((self.recent[users] == items[:, None]).any(axis=1))
            if dup.size == 0:
                break
            cand = w.draw_popular(w.item_cluster[items[dup]], rng)
            wd = walked[dup]
            if wd.any():
                nb = w.neighbour(items[dup[wd]], rng)
                ok = w.released(nb)
                sub = np.flatnonzero(wd)
                cand[sub[ok]] = nb[ok]
                walked[dup[sub[~ok]]] = False
            items[dup] = cand
        return items

    def _remember(self, users: np.ndarray, items: np.ndarray) -> None:
        """Add items to the users' ring buffers of recently consumed items."""
        self.recent[users, self.recent_ptr[users] % _RECENT] = items
        self.recent_ptr[users] += 1

    def _sessions(self, users: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
        cfg, w, rng = self.cfg, self.world, self.rng
        s = users.size
        if s == 0:
            empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
            return {"user": empty_i, "item": empty_i, "etype": empty_i, "t": empty_f}
        lengths = rng.geometric(1.0 / cfg.mean_session_steps, s)
        n_steps = int(lengths.max())
        items = np.full((s, n_steps), -1, dtype=np.int64)

        # First item: continue the previous session's sequence, or popular in a cluster.
        cl = w.draw_cluster(users, rng)
        first = w.draw_popular(cl, rng)
        main = np.flatnonzero(rng.random(s) < cfg.mainstream_prob)
        first[main] = w.draw_global(main.size, rng)
        walked = np.zeros(s, dtype=bool)
        last = w.last_item[users]
        resume = (rng.random(s) < cfg.resume_prob) & (last >= 0)
        if resume.any():
            nb = w.neighbour(last[resume], rng, forward=np.ones(int(resume.sum()), dtype=bool))
            ok = w.released(nb)
            idx = np.flatnonzero(resume)[ok]
            first[idx] = nb[ok]
            walked[idx] = True
        items[:, 0] = self._avoid_repeats(users, first, walked)
        self._remember(users, items[:, 0])

        p_walk = cfg.walk_prob
        p_switch = p_walk + cfg.switch_prob
        p_back = p_switch + cfg.backtrack_prob
        p_main = p_back + cfg.mainstream_prob
        for step in range(1, n_steps):
            act = np.flatnonzero(lengths > step)
            act_users = users[act]
            prev = items[act, step - 1]
            prev_cluster = w.item_cluster[prev]
            r = rng.random(act.size)
            nxt = w.draw_popular(prev_cluster, rng)  # default: popular in the same cluster
            walked = np.zeros(act.size, dtype=bool)
            walk = np.flatnonzero(r < p_walk)
            if walk.size:
                nb = w.neighbour(prev[walk], rng)
                ok = w.released(nb)
                nxt[walk[ok]] = nb[ok]
                walked[walk[ok]] = True
            switch = np.flatnonzero((r >= p_walk) & (r < p_switch))
            if switch.size:
                c = w.draw_cluster(act_users[switch], rng, exclude=prev_cluster[switch])
                nxt[switch] = w.draw_popular(c, rng)
            main = np.flatnonzero((r >= p_back) & (r < p_main))
            if main.size:
                nxt[main] = w.draw_global(main.size, rng)
            nxt = self._avoid_repeats(act_users, nxt, walked)
            fresh = np.ones(act.size, dtype=bool)
            if step >= 2:  # going back re-visits an item on purpose
                back = np.flatnonzero((r >= p_switch) & (r < p_back))
                nxt[back] = items[act[back], step - 2]
                fresh[back] = False
            self._remember(act_users[fresh], nxt[fresh])
            items[act, step] = nxt

        # Remember where each user's latest session ended (sessions are in start order).
        ends = items[np.arange(s), lengths - 1]
        rev_users = users[::-1]
        uniq, first_idx = np.unique(rev_users, return_index=True)
        w.last_item[uniq] = ends[::-1][first_idx]

        # Step times: log-normal gaps between the items of a session.
        gaps = np.exp(self.gap_mu + rng.normal(0.0, 1.0, (s, n_steps)))
        gaps = np.clip(gaps, 2.0, 1800.0)
        gaps[:, 0] = 0.0
        times = starts[:, None] + np.cumsum(gaps, axis=1)

        valid = items >= 0
        ev_user = np.broadcast_to(users[:, None], items.shape)[valid]
        ev_item = items[valid]
        ev_t = times[valid]
        etype = np.searchsorted(self.etype_cum, rng.random(ev_item.size), side="right")
        etype = np.minimum(etype, len(EVENT_TYPES) - 1)

        # Carts and purchases: usually a view first, the deeper stage a bit later.
        deep = np.flatnonzero(etype >= 2)
        pre = deep[rng.random(deep.size) < cfg.preview_prob]
        delay = rng.uniform(*_STAGE_DELAY, pre.size)
        user_out = np.concatenate([ev_user, ev_user[pre]])
        item_out = np.concatenate([ev_item, ev_item[pre]])
        etype_out = np.concatenate([etype, np.zeros(pre.size, dtype=etype.dtype)])
        t_out = ev_t.copy()
        t_out[pre] += delay
        t_out = np.concatenate([t_out, ev_t[pre]])
        return {"user": user_out, "item": item_out, "etype": etype_out, "t": t_out}

    def records(self) -> Iterator[dict[str, Any] | _Malformed]:
        """Valid event dicts and ``_Malformed`` records, in time order."""
        cfg, w, rng = self.cfg, self.world, self.rng
        n_items = cfg.items
        seen = np.zeros(n_items, dtype=bool)
        meta = [{"title": w.item_title[i], "price": float(w.item_price[i])} for i in range(n_items)]
        cat_of = [w.category_names[c] for c in w.item_category.tolist()]
        user_ids, item_ids = w.user_ids, w.item_ids
        etypes = EVENT_TYPES
        start = cfg.start_ts
        emitted = 0
        pend: dict[str, np.ndarray] | None = None
        ws = 0.0
        while emitted < cfg.events:
            batch = self.window(ws)
            if pend is not None:
                batch = {k: np.concatenate([pend[k], batch[k]]) for k in batch}
            ws += _WINDOW
            order = np.argsort(batch["t"], kind="stable")
            cut = int(np.searchsorted(batch["t"][order], ws, side="left"))
            done, rest = order[:cut], order[cut:]
            pend = {k: v[rest] for k, v in batch.items()}
            if cut == 0:
                continue
            ev_users = batch["user"][done].tolist()
            ev_items = batch["item"][done].tolist()
            ev_types = batch["etype"][done].tolist()
            ev_ts = np.round(start + batch["t"][done], 2).tolist()
            meta_draw = (rng.random(cut) < cfg.metadata_rate).tolist()
            bad = rng.random(cut) < self.malformed_odds
            bad_idx = set(np.flatnonzero(bad).tolist())
            bad_kind = rng.integers(0, len(MALFORMED_KINDS), cut).tolist()
            bad_u = rng.random(cut).tolist()
            for k in range(cut):
                i = ev_items[k]
                ev: dict[str, Any] = {
                    "user_id": user_ids[ev_users[k]],
                    "item_id": item_ids[i],
                    "event": etypes[ev_types[k]],
                    "ts": ev_ts[k],
                }
                if not seen[i] or meta_draw[k]:
                    seen[i] = True
                    ev["category"] = cat_of[i]
                    ev["metadata"] = dict(meta[i])
                if k in bad_idx:
                    yield _Malformed(MALFORMED_KINDS[bad_kind[k]], ev, bad_u[k])
                yield ev
                emitted += 1
                if emitted >= cfg.events:
                    return


# --------------------------------------------------------------------------------------
# Malformed lines
# --------------------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_dumps = _ENCODER.encode


def _long_id(prefix: str, u: float) -> str:
    return prefix + "x" * (MAX_ID_LENGTH + 1 + int(u * 700))


def _malformed_json(rec: _Malformed) -> str:
    """The raw text of a malformed jsonl line; it is invalid per the event schema."""
    base = {k: rec.base[k] for k in ("user_id", "item_id", "event", "ts")}
    kind, u = rec.kind, rec.u
    if kind == "invalid_json":
        text = _dumps(base)
        if u < 0.2:  # single quotes, as a Python repr would produce
            return repr(base)
        return text[: 1 + int(u * (len(text) - 2))]  # a prefix without the closing brace
    if kind == "not_an_object":
        options: list[Any] = [
            [base["user_id"], base["item_id"], base["event"], base["ts"]],
            base["ts"],
            f"{base['user_id']} {base['item_id']}",
            None,
        ]
        return _dumps(options[int(u * len(options))])
    bad = dict(base)
    if kind == "missing_user_id":
        del bad["user_id"]
    elif kind == "empty_item_id":
        bad["item_id"] = "" if u < 0.5 else None
    elif kind == "list_user_id":
        bad["user_id"] = [base["user_id"]]
    elif kind == "long_id":
        key = "user_id" if u < 0.5 else "item_id"
        bad[key] = _long_id(base[key], u)
    elif kind == "nonnumeric_ts":
        bad["ts"] = ["not-a-time", "", "yesterday", None][int(u * 4)]
    elif kind == "negative_ts":
        bad["ts"] = -base["ts"] if u < 0.5 else -1.0
    elif kind == "bad_event_type":
        bad["event"] = 42 if u < 0.5 else None
    else:  # pragma: no cover - MALFORMED_KINDS is closed
        raise AssertionError(kind)
    return _dumps(bad)


def _malformed_csv(rec: _Malformed) -> list[str]:
    """A malformed csv row: bad ts, empty/over-long ids or a wrong number of columns."""
    b = rec.base
    row = [b["user_id"], b["item_id"], b["event"], repr(b["ts"]), b.get("category", ""), ""]
    kind, u = rec.kind, rec.u
    if kind in ("invalid_json", "not_an_object"):
        return row[: 1 + int(u * 3)]  # 1 to 3 columns instead of 6
    if kind in ("missing_user_id", "list_user_id"):
        row[0] = ""
    elif kind == "empty_item_id":
        row[1] = ""
    elif kind == "long_id":
        i = 0 if u < 0.5 else 1
        row[i] = _long_id(row[i], u)
    elif kind in ("nonnumeric_ts", "bad_event_type"):
        row[3] = ["not-a-time", "", "yesterday", "NaN"][int(u * 4)]
    elif kind == "negative_ts":
        row[3] = repr(-b["ts"])
    return row


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def generate(config: SynthConfig) -> Iterator[dict[str, Any] | str]:
    """Yield events in time order: a dict for a valid event, a raw str for a malformed line.

    Exactly ``config.events`` dicts are yielded; malformed lines come on top, so their
    share among all yielded records is about ``config.malformed_rate``. A malformed
    string is the line a broken producer would have written (a truncated JSON object, a
    JSON object with a missing / empty / wrongly typed / over-long field, ...). The same
    config always yields the same records. Valid dicts are fresh objects the caller may
    mutate.
    """
    for rec in _Simulator(config).records():
        yield _malformed_json(rec) if isinstance(rec, _Malformed) else rec


def catalog(config: SynthConfig) -> list[dict[str, Any]]:
    """The item catalogue of ``config``'s world, including items that never appear.

    One dict per item: ``item_id``, ``category``, ``title``, ``price``, ``release_ts``
    (epoch seconds; ``None`` for items that exist from the start) and the hidden
    ground-truth ``cluster`` (an int, for analysis and tests only).
    """
    w = _World(config, np.random.default_rng(config.seed))
    out = []
    for i in range(config.items):
        rel = float(w.item_release[i])
        out.append(
            {
                "item_id": w.item_ids[i],
                "category": w.category_names[int(w.item_category[i])],
                "title": w.item_title[i],
                "price": float(w.item_price[i]),
                "release_ts": None if rel < 0 else round(config.start_ts + rel, 2),
                "cluster": int(w.item_cluster[i]),
            }
        )
    return out


def write_stream(path: str | Path, config: SynthConfig, fmt: str = "jsonl") -> SynthSummary:
    """Write the stream of ``config`` to ``path`` and return what was written.

    Formats:

    * ``jsonl`` - one JSON object per line (compact separators), malformed lines written
      as-is; the lines are exactly those of ``generate(config)``.
    * ``csv`` - header ``user_id,item_id,event,ts,category,title``; category and title are
      filled where the jsonl event carries them, else empty. Malformed rows have a bad ts
      (non-numeric / negative), an empty or over-long id, or a wrong number of columns.
    * ``tsv`` - ``user<TAB>item<TAB>ts``, no header and no malformed lines (MovieLens-like).

    Parent directories are created.
    """
    if fmt not in ("jsonl", "csv", "tsv"):
        raise ValueError(f"unknown format {fmt!r}; expected 'jsonl', 'csv' or 'tsv'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_events = n_bad = 0
    users: set[str] = set()
    items: set[str] = set()
    first_ts = last_ts = math.nan
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(["user_id", "item_id", "event", "ts", "category", "title"])
        for rec in _Simulator(config).records():
            if isinstance(rec, _Malformed):
                if fmt == "jsonl":
                    fh.write(_malformed_json(rec) + "\n")
                    n_bad += 1
                elif writer is not None:
                    writer.writerow(_malformed_csv(rec))
                    n_bad += 1
                continue
            n_events += 1
            users.add(rec["user_id"])
            items.add(rec["item_id"])
            if n_events == 1:
                first_ts = rec["ts"]
            last_ts = rec["ts"]
            if fmt == "jsonl":
                fh.write(_dumps(rec) + "\n")
            elif writer is not None:
                title = rec["metadata"]["title"] if "metadata" in rec else ""
                writer.writerow(
                    [rec["user_id"], rec["item_id"], rec["event"], repr(rec["ts"]),
                     rec.get("category", ""), title]
                )  # fmt: skip
            else:
                fh.write(f"{rec['user_id']}\t{rec['item_id']}\t{rec['ts']!r}\n")
    return SynthSummary(
        path=str(path),
        fmt=fmt,
        events=n_events,
        malformed=n_bad,
        users=len(users),
        items=len(items),
        first_ts=first_ts,
        last_ts=last_ts,
    )
