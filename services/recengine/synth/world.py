"""The simulated world: clusters, items, users and their time-dependent weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from recengine.synth.config import CATEGORY_NAMES, WORLD_DAY, SynthConfig

DIURNAL_AMPLITUDE = 0.5

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


def category_names(n: int) -> list[str]:
    names = list(CATEGORY_NAMES[:n])
    names += [f"category-{k + 1}" for k in range(len(names), n)]
    return names


class World:
    """Static structure: clusters, items, users, and the time-dependent weights."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        k, n_items, n_users = cfg.clusters, cfg.items, cfg.users
        self.horizon = cfg.events / cfg.events_per_day * WORLD_DAY

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
        names = category_names(cfg.categories)
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
        self.user_activity_cum = np.cumsum(np.exp(rng.normal(0.0, cfg.activity_sigma, n_users)))
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
            -np.maximum(age, 0.0) / (self.cfg.burst_days * WORLD_DAY)
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
        return 1.0 + DIURNAL_AMPLITUDE * np.sin(2 * np.pi * t / WORLD_DAY + self.diurnal_phase)

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


def catalog(config: SynthConfig) -> list[dict[str, Any]]:
    """The item catalogue of ``config``'s world, including items that never appear.

    One dict per item: ``item_id``, ``category``, ``title``, ``price``, ``release_ts``
    (epoch seconds; ``None`` for items that exist from the start) and the hidden
    ground-truth ``cluster`` (an int, for analysis and tests only).
    """
    w = World(config, np.random.default_rng(config.seed))
    out = []
    for i in range(config.items):
        rel = float(w.item_release[i])
        out.append(
            {
                "item_id": w.item_ids[i],
                "category": w.category_names[int(w.item_category[i])],
                "title": w.item_title[i],
                "price": float(w.item_price[i]),
                "release_ts": None if rel < 0 else round(config.first_ts + rel * config.clock, 2),
                "cluster": int(w.item_cluster[i]),
            }
        )
    return out
