"""The learning state of one RecEngine and how a micro-batch of events updates it.

A :class:`Learner` owns the vocabularies, the GMF model, each user's recent items, the
item-to-item neighbours, the popularity sketch and the prequential evaluator. ``learn`` applies
a whole micro-batch with vectorised updates. Order inside the batch still matters where it is
cheap to honour: every event's "previous items" (for co-occurrence pairs, the recency buffer and
evaluation) include that user's earlier events in the same batch, and an evaluated event
excludes the items its user consumed earlier in the batch. Model embeddings, neighbour weights
and popularity used to evaluate a batch are those from before it (test, then train).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from recengine.config import Settings
from recengine.cooc import ItemNeighbours, RecentItems
from recengine.evaluation import RecallTracker, SeenItems
from recengine.events import EventBatch, Limits, Rejected
from recengine.model import GMF
from recengine.popularity import ItemCounts, Popularity
from recengine.ranking import (
    RankingParams,
    blend_dense,
    item2item_dense,
    recency_weights,
    top_rows,
)
from recengine.sources import Lines, decode
from recengine.trainer.population import population_hits
from recengine.trainer.row_decoder import RowBatch, RowDecoder
from recengine.tuning import SelfTuner
from recengine.vocab import Vocabulary

#: Users evaluated per scoring chunk (bounds memory at chunk x items floats; small chunks keep
#: their scratch arrays in the CPU caches).
EVAL_CHUNK = 64


@dataclass
class LearnStats:
    events: int
    evaluated: int
    seconds: float


def _user_order(users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable order by user, each event's occurrence index among its user's batch events
    (0, 1, 2, …), and the index of each user's last event in the batch."""
    order = np.argsort(users, kind="stable")
    sorted_u = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_u)) + 1]
    lengths = np.diff(np.r_[starts, len(users)])
    occ = np.empty(len(users), dtype=np.int64)
    occ[order] = np.arange(len(users)) - np.repeat(starts, lengths)
    last = order[starts + lengths - 1]
    return order, occ, last


class Learner:
    """Everything the trainer learns from the stream, with test-then-train evaluation."""

    def __init__(self, settings: Settings, *, seed: int = 0,
                 seen_limit: int | None = 500) -> None:
        s = settings
        self.settings = s
        self.weights_table = s.weights
        self.limits = Limits.of(s)
        self.users = Vocabulary()
        self.items = Vocabulary()
        self.model = GMF(s.dim, s.initial_users, s.initial_items, growth=s.growth, lr=s.lr,
                         reg=s.reg, negatives=s.negatives, passes=s.passes,
                         optimizer=s.optimizer, seed=seed)
        self.recent = RecentItems(s.recent_items, s.initial_users)
        self.neighbours = ItemNeighbours(s.neighbours, s.cooc_half_life_events, s.pair_decay,
                                         s.initial_items, backward=s.cooc_backward_weight,
                                         exponent=s.neighbour_exponent)
        self.popularity = Popularity(s.popularity_capacity, s.popularity_half_life_events)
        self.counts = ItemCounts(s.popularity_half_life_events, s.initial_items)
        self.tuner = SelfTuner.start(
            RankingParams(s.recency_decay, s.recent_items, s.blend, s.pop_blend, s.pop_source,
                          s.pop_depth),
            s.tuning_population, s.recent_items, seed=seed, enabled=s.self_tuning,
            min_evaluated=s.tuning_min_evaluated, z=s.tuning_z)
        self.seen = SeenItems(seen_limit)
        self.tracker = RecallTracker(k=s.eval_k, window=s.eval_window)
        self.categories = Vocabulary()
        self.item_category = np.full(s.initial_items, -1, dtype=np.int64)
        self.item_info: dict[int, dict] = {}
        self._info_changed: set[int] = set()
        self.user_events = np.zeros(s.initial_users, dtype=np.int64)
        self.events = 0
        self.last_ts = 0.0
        self.rng = np.random.default_rng(seed)
        self.dirty_users: set[int] = set()
        self._decoder: RowDecoder | None = None

    # --- from records to rows --------------------------------------------------------------------
    def decode(self, raws: Sequence[bytes], fmt: str = "jsonl") -> tuple[RowBatch, list[Rejected]]:
        """Validate polled records into a batch of rows to :meth:`learn` (new ids get rows
        now), and the rejects with their reasons. JSON lines take the compiled scanner
        (:mod:`recengine.trainer.row_decoder`); CSV, TSV and text lines the string path."""
        if fmt == "jsonl":
            data = None
            if not isinstance(raws, Lines):
                try:
                    data = b"".join(raws)
                except TypeError:  # text lines (tools, tests): the string path below
                    return self._rows_of(raws, fmt)
            d = self._decoder
            if d is None or d.users is not self.users or d.items is not self.items:
                d = self._decoder = RowDecoder(self.users, self.items, self.weights_table,
                                               self.limits)
            return d.decode(raws, data)
        return self._rows_of(raws, fmt)

    def _rows_of(self, raws: Sequence[bytes], fmt: str) -> tuple[RowBatch, list[Rejected]]:
        """The string path: events parsed and validated as strings, then mapped to rows."""
        batch, rejected = decode(raws, fmt, self.limits)
        return self.rows(batch), rejected

    def rows(self, batch: EventBatch) -> RowBatch:
        """A batch of validated events as rows (new ids get rows)."""
        items_before = len(self.items)
        u = self.users.add(batch.users)
        i = self.items.add(batch.items)
        get = self.items.get
        info = {get(item_id): doc for item_id, doc in batch.item_info.items()}
        if info and self._decoder is not None:
            self._decoder.forget(info)
        return RowBatch(u, i, batch.weights(self.weights_table), batch.ts, items_before, info)

    # --- the hot path ----------------------------------------------------------------------------
    def learn(self, batch: RowBatch | EventBatch, eval_fraction: float | None = None
              ) -> LearnStats:
        """Evaluate (a sample of) then learn one micro-batch, vectorised over all its events.
        A :class:`RowBatch` comes from :meth:`decode` or :meth:`rows` of this learner."""
        t0 = time.perf_counter()
        if isinstance(batch, EventBatch):
            batch = self.rows(batch)
        n = len(batch)
        if n == 0:
            return LearnStats(0, 0, 0.0)
        frac = self.settings.eval_sample if eval_fraction is None else eval_fraction
        u, i = batch.users, batch.items
        known = i < batch.items_before  # an item new to the learner is a miss
        n_items = len(self.items)
        self._ensure(len(self.users), n_items)
        self._record_item_info(batch.item_info)
        w = batch.weights
        ts = batch.ts
        # The event clock: decays count events, not seconds (see recengine.popularity).
        clock = self.events + np.arange(n, dtype=np.float64)
        order, occ, last = _user_order(u)
        # Each event's user's recent items just before it; the buffer moves on (the evaluation
        # and the co-occurrence update below read ``prev_rows``, not the buffer).
        prev_rows = self.recent.advance(u, i, ts)
        evaluated = 0
        if frac > 0:
            pick = self.rng.random(n) < frac if frac < 1.0 else np.ones(n, dtype=bool)
            # Once an item appeared earlier in the batch it is known to later events.
            uniq, inv = np.unique(i, return_inverse=True)
            first = np.full(len(uniq), n, dtype=np.int64)
            np.minimum.at(first, inv, np.arange(n))
            known |= first[inv] < np.arange(n)
            ev = np.flatnonzero(pick & ((self.user_events[u] + occ) > 0))
            if len(ev):
                truth = np.where(known[ev], i[ev], -1)
                evaluated = self._evaluate(ev, u, truth, prev_rows, order, occ, i)
        self.model.partial_fit(u, i, w, n_items)
        self.neighbours.update(prev_rows, i, clock, w)
        self.popularity.update(i, clock, w, self.item_category[i], self.categories.ids)
        self.counts.update(i, clock)
        self.seen.add(u, i, order)
        np.add.at(self.user_events, u, 1)
        self.events += n
        self.last_ts = max(self.last_ts, float(ts.max()))
        self.dirty_users.update(u[last].tolist())
        return LearnStats(n, evaluated, time.perf_counter() - t0)

    def _ensure(self, n_users: int, n_items: int) -> None:
        g = self.settings.growth
        self.model.ensure_capacity(n_users, n_items)
        self.recent.ensure(n_users, g)
        self.neighbours.ensure(n_items, g)
        self.counts.ensure(n_items, g)
        if n_users > len(self.user_events):
            grown = np.zeros(self.model.user_capacity, dtype=np.int64)
            grown[: len(self.user_events)] = self.user_events
            self.user_events = grown
        if n_items > len(self.item_category):
            grown_c = np.full(self.model.item_capacity, -1, dtype=np.int64)
            grown_c[: len(self.item_category)] = self.item_category
            self.item_category = grown_c

    def new_item_info(self) -> dict[int, dict]:
        """Metadata of the items whose metadata changed since the last call."""
        changed, self._info_changed = self._info_changed, set()
        return {r: self.item_info[r] for r in changed}

    def _record_item_info(self, info: dict[int, dict]) -> None:
        known = self.item_info
        for row, doc in info.items():
            old = known.get(row)
            if old is not None and old.items() >= doc.items():
                continue  # nothing new: most events repeat what their item already has
            known[row] = {**(old or {}), **doc}
            self._info_changed.add(row)
            cat = doc.get("category")
            if cat:
                c = self.categories.get(cat)
                self.item_category[row] = int(self.categories.add([cat])[0]) if c is None else c

    # --- evaluation --------------------------------------------------------------------------
    def _evaluate(self, ev: np.ndarray, u: np.ndarray, truth: np.ndarray,
                  prev_rows: np.ndarray, order: np.ndarray, occ: np.ndarray,
                  i: np.ndarray) -> int:
        """Score the sampled events ``ev`` of a batch with the state before the batch, except
        that each user's recent and seen items include their earlier events in the batch: by
        every ranking of the self-tuning population and by both popularity baselines."""
        k = self.tracker.k
        s = self.settings
        n_items = len(self.items)
        users = u[ev]
        items_t = self.model.item_vectors(n_items).T if any(
            p.blend > 0 for p in self.tuner.population) else None
        pos = np.empty(len(u), dtype=np.int64)
        pos[order] = np.arange(len(u))
        sorted_items = i[order]
        # Items each evaluated user consumed earlier in this batch, as (event, item) pairs.
        n_extra = occ[ev]
        extra_rows = np.repeat(np.arange(len(ev)), n_extra)
        first = np.repeat(pos[ev] - n_extra, n_extra)
        offset = np.arange(len(extra_rows)) - np.repeat(np.cumsum(n_extra) - n_extra, n_extra)
        extra_cols = sorted_items[first + offset]
        seen = self.seen.items
        lists = [seen.get(x, ()) for x in users.tolist()]
        # The popularity rankings, deep enough to hold every ranking's ``pop_depth`` items that
        # any evaluated user has not consumed.
        most_excluded = max(map(len, lists), default=0) + int(n_extra.max(initial=0))
        depth = max(p.pop_depth for p in self.tuner.population) + most_excluded
        pops = np.full((2, min(depth, n_items)), -1, dtype=np.int64)
        for row, source in enumerate(("all", "decayed")):
            top = self.counts.ranking(source, n_items, depth)
            pops[row, : len(top)] = top
        population = self.tuner.population
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        cols = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum()))
        ex_rows = np.concatenate([np.repeat(np.arange(len(lists)), lengths), extra_rows])
        ex_cols = np.concatenate([cols, extra_cols])
        keep = ex_cols < n_items
        ex_rows, ex_cols = ex_rows[keep], ex_cols[keep]
        mf_top = None
        if items_t is not None:  # the model's candidates only when a ranking weighs them
            m = min(s.candidates, n_items)
            mf_top = np.empty((len(ev), m), dtype=np.int64)
            mf_ok = np.empty((len(ev), m), dtype=np.bool_)
            for start in range(0, len(ev), EVAL_CHUNK):
                stop = min(start + EVAL_CHUNK, len(ev))
                mf = self.model.user_vectors(users[start:stop]) @ items_t
                here = (ex_rows >= start) & (ex_rows < stop)
                mf[ex_rows[here] - start, ex_cols[here]] = -np.inf
                top, vals = top_rows(mf, m)
                mf_top[start:stop], mf_ok[start:stop] = top, np.isfinite(vals)
        hits, base = population_hits(mf_top, mf_ok if mf_top is not None else None,
                                     prev_rows[ev], self.neighbours, ex_rows, ex_cols, pops,
                                     population, s.candidates, k, truth, n_items)
        self.tracker.record(hits[:, 0], base[:, 0], base[:, 1], self.events)
        self.tuner.observe(hits)
        return len(ev)

    def popularity_ranking(self, depth: int, source: str | None = None) -> np.ndarray:
        """The ``depth`` most popular item rows by ``source`` (default: the served ranking's)."""
        return self.counts.ranking(source or self.tuner.current.pop_source, len(self.items),
                                   depth)

    def recommend_rows(self, users: np.ndarray, k: int) -> np.ndarray:
        """Top-k item rows for user rows from the current state, ranked as served."""
        n_items = len(self.items)
        s = self.settings
        params = self.tuner.current
        rows, _ = self.recent.get(users)
        mf = self.model.user_vectors(users) @ self.model.item_vectors(n_items).T
        nb_ids, nb_w = self.neighbours.normalised(rows)
        rec_w = recency_weights(rows, params.recency_decay, params.recent_used)
        i2i = item2item_dense(rec_w, nb_ids, nb_w, n_items)
        return blend_dense(mf, i2i, self.seen.mask(users, n_items),
                           self.popularity_ranking(n_items), params, s.candidates, k)

    # --- serving views -------------------------------------------------------------------------
    def popular(self, n: int = 100, category: str | None = None) -> list[tuple[str, float]]:
        """The n most popular items: overall by the popularity the served ranking uses (exact
        counts), per category by the decayed sketch."""
        if category is None:
            source = self.tuner.current.pop_source
            rows = self.counts.ranking(source, len(self.items), n)
            counts = (self.counts.total if source == "all" else self.counts.decayed)[rows]
            if source == "decayed":  # as of now on the event clock
                counts = counts * np.exp2((self.counts.t_ref - self.events)
                                          / self.counts.half_life)
        else:
            rows, counts = self.popularity.top(n, category, float(self.events))
        return [(self.items.id(int(r)), float(c)) for r, c in zip(rows, counts, strict=True)]

    def user_recent(self, row: int) -> list[tuple[str, float]]:
        rows, ts = self.recent.rows[row], self.recent.ts[row]
        return [(self.items.id(int(r)), float(t)) for r, t in zip(rows, ts, strict=True)
                if r >= 0]

    # --- persistence ---------------------------------------------------------------------------
    def state(self) -> dict:
        nu, ni = len(self.users), len(self.items)
        return {
            "users": self.users.state(), "items": self.items.state(),
            "model": self.model.state(), "recent": self.recent.state(nu),
            "neighbours": self.neighbours.state(ni), "popularity": self.popularity.state(),
            "counts": self.counts.state(ni), "tuner": self.tuner.state(),
            "seen": self.seen.state(), "tracker": self.tracker.state(),
            "categories": self.categories.state(), "item_category": self.item_category[:ni].copy(),
            "item_info": self.item_info, "user_events": self.user_events[:nu].copy(),
            "events": self.events, "last_ts": self.last_ts,
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_state(cls, settings: Settings, state: dict) -> Learner:
        lr = cls(settings)
        lr.users = Vocabulary.from_state(state["users"])
        lr.items = Vocabulary.from_state(state["items"])
        lr.model = GMF.from_state(state["model"])
        lr.recent = RecentItems.from_state(state["recent"])
        lr.neighbours = ItemNeighbours.from_state(state["neighbours"])
        lr.popularity = Popularity.from_state(state["popularity"])
        lr.counts = ItemCounts.from_state(state["counts"])
        lr.tuner = SelfTuner.from_state(state["tuner"])
        lr.seen = SeenItems.from_state(state["seen"])
        lr.tracker = RecallTracker.from_state(state["tracker"])
        lr.categories = Vocabulary.from_state(state["categories"])
        lr.item_category = np.asarray(state["item_category"], dtype=np.int64)
        lr.item_info = dict(state["item_info"])
        lr.user_events = np.asarray(state["user_events"], dtype=np.int64)
        lr.events = int(state["events"])
        lr.last_ts = float(state["last_ts"])
        lr.rng.bit_generator.state = state["rng"]
        lr._ensure(len(lr.users), len(lr.items))
        return lr


def warm_up(settings: Settings) -> None:
    """Compile (or load from numba's on-disk cache) every kernel the learner runs, on a
    throwaway learner and a few synthetic events, so that the first real batch does not wait
    for the compiler: ~20 s on a cold cache, which a standby would otherwise pay at takeover."""
    lines = [(f'{{"user_id":"u{n % 3}","item_id":"i{n % 5}","event":"view","ts":{1.7e9 + n},'
              f'"category":"c{n % 2}","metadata":{{"n":{n % 5}}}}}').encode() for n in range(64)]
    learner = Learner(settings)
    for part in (lines[:32], lines[32:]):
        batch, _ = learner.decode(part)
        learner.learn(batch, eval_fraction=1.0)
