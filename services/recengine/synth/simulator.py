"""Session simulation: turns the world into time-ordered events and malformed records."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from recengine.synth.config import EVENT_TYPES, SynthConfig
from recengine.synth.malformed import MALFORMED_KINDS, MalformedRecord
from recengine.synth.world import DIURNAL_AMPLITUDE, World

_WINDOW = 3_600.0  # sessions are generated one hour of stream time at a time
_STAGE_DELAY = (5.0, 90.0)  # seconds between the view and the cart/purchase of an item
_RECENT = 64  # items per user remembered to avoid re-consumption
_REPEAT_RETRIES = 4  # draws tried before a re-consumption is accepted



class Simulator:
    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.world = World(cfg, self.rng)
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
        n_cand = rng.poisson(self.session_rate * _WINDOW * (1.0 + DIURNAL_AMPLITUDE))
        t = ws + rng.random(n_cand) * _WINDOW
        keep = rng.random(n_cand) * (1.0 + DIURNAL_AMPLITUDE) < w.diurnal(t)
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

    def records(self) -> Iterator[dict[str, Any] | MalformedRecord]:
        """Valid event dicts and ``MalformedRecord`` records, in time order."""
        cfg, w, rng = self.cfg, self.world, self.rng
        n_items = cfg.items
        seen = np.zeros(n_items, dtype=bool)
        meta = [{"title": w.item_title[i], "price": float(w.item_price[i])} for i in range(n_items)]
        cat_of = [w.category_names[c] for c in w.item_category.tolist()]
        user_ids, item_ids = w.user_ids, w.item_ids
        etypes = EVENT_TYPES
        start, clock = cfg.first_ts, cfg.clock
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
            ev_ts = np.round(start + batch["t"][done] * clock, 2).tolist()
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
                    yield MalformedRecord(MALFORMED_KINDS[bad_kind[k]], ev, bad_u[k])
                yield ev
                emitted += 1
                if emitted >= cfg.events:
                    return
