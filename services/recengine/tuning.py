"""Self-tuning of the ranking on the live stream: a small population raced on the same events.

Which ranking weights serve best differs from stream to stream (a dense film catalogue wants
many recent items and a light model; a news stream wants the newest item and recent
popularity), and it drifts. Gorse retrains and searches hyper-parameters offline on a timer;
here the trainer already scores sampled events before it learns them (test, then learn), so it
scores each of them with every ranking of a small population as well, at the cost of scoring
only: the learned state (model, neighbours, counts) is shared, and only the weights that
combine it differ (:class:`recengine.ranking.RankingParams`).

The ranking in force (the *incumbent*) is served and is what the engine's recall reports. A
*challenger* replaces it only when it has been compared on at least ``min_evaluated`` of the
same events and wins a paired sign test at ``z`` standard errors (events one of them hits and
the other misses), by at least ``margin`` relative recall: hysteresis, so two equal rankings
never flap. A challenger that is clearly worse (the same test the other way), or that has
raced ten times ``min_evaluated`` events without a verdict, is retired (and not drawn again
until the incumbent changes), and a new one is drawn one grid step from the incumbent, so the
search keeps exploring around what serves. Everything is deterministic given the seed, and
the whole state goes into checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from recengine.ranking import POP_SOURCES, RankingParams

#: The values each weight may take; a mutation moves one step along its grid.
GRID: dict[str, tuple] = {
    "recency_decay": (0.3, 0.5, 0.65, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0),
    "recent_used": (1, 2, 3, 5, 8, 12, 16, 20, 30, 40),
    "blend": (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 1.0, 2.0),
    "pop_blend": (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.8, 1.5),
    "pop_source": POP_SOURCES,
    "pop_depth": (100, 300, 1000, 3000),
}


def _step(values: tuple, current: object, direction: int) -> object:
    """The grid value ``direction`` steps from ``current`` (the nearest one if off the grid)."""
    if isinstance(current, str):
        at = values.index(current) if current in values else 0
    else:
        at = int(np.argmin([abs(float(v) - float(current)) for v in values]))
    return values[min(len(values) - 1, max(0, at + direction))]


def neighbours_of(params: RankingParams, max_recent: int) -> list[RankingParams]:
    """Every ranking one grid step away from ``params`` (``recent_used`` capped)."""
    out = []
    for name, values in GRID.items():
        for direction in ((1,) if name == "pop_source" else (-1, 1)):
            v = _step(values, getattr(params, name), direction)
            if name == "pop_source":
                v = values[(values.index(params.pop_source) + 1) % len(values)]
            if name == "recent_used":
                v = min(int(v), max_recent)
            cand = replace(params, **{name: v})
            if cand != params and cand not in out:
                out.append(cand)
    return out


@dataclass
class SelfTuner:
    """A population of rankings raced on shared evaluated events (index 0 is the incumbent)."""

    population: list[RankingParams]
    max_recent: int
    min_evaluated: int = 2000
    z: float = 3.0
    margin: float = 0.01
    seed: int = 0
    enabled: bool = True
    #: Per challenger since it was last compared fresh: events only it hit, events only the
    #: incumbent hit, events compared; and each ranking's total hits over the same events.
    wins: list[int] = field(default_factory=list)
    losses: list[int] = field(default_factory=list)
    compared: list[int] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    switches: list[dict] = field(default_factory=list)
    #: Rankings retired since the last switch: not drawn again around the same incumbent.
    retired: list[dict] = field(default_factory=list)
    evaluated: int = 0
    draws: int = 0

    def __post_init__(self) -> None:
        n = len(self.population)
        for name in ("wins", "losses", "compared", "hits"):
            if len(getattr(self, name)) != n:
                setattr(self, name, [0] * n)

    @classmethod
    def start(cls, incumbent: RankingParams, size: int, max_recent: int, *, seed: int = 0,
              enabled: bool = True, min_evaluated: int = 2000, z: float = 3.0,
              margin: float = 0.01) -> SelfTuner:
        """A population around ``incumbent``: its one-step neighbours, in a seeded order."""
        incumbent = replace(incumbent, recent_used=min(incumbent.recent_used, max_recent))
        pop = [incumbent]
        if enabled and size > 1:
            near = neighbours_of(incumbent, max_recent)
            rng = np.random.default_rng(seed)
            for i in rng.permutation(len(near))[: size - 1].tolist():
                pop.append(near[i])
        return cls(pop, max_recent, min_evaluated, z, margin, seed, enabled)

    @property
    def current(self) -> RankingParams:
        """The ranking in force (served, and what the engine's recall reports)."""
        return self.population[0]

    def observe(self, hits: np.ndarray) -> None:
        """Record a (b, C) matrix of hits (column j: ranking j of the population), then decide
        on switches and replacements."""
        if len(hits) == 0:
            return
        h = hits.astype(np.int64)
        inc = h[:, 0]
        self.evaluated += len(h)
        col_hits = h.sum(axis=0).tolist()
        for j in range(len(self.population)):
            self.hits[j] += col_hits[j]
            self.compared[j] += len(h)
            if j:
                self.wins[j] += int(((h[:, j] == 1) & (inc == 0)).sum())
                self.losses[j] += int(((h[:, j] == 0) & (inc == 1)).sum())
        if self.enabled and len(self.population) > 1:
            self._decide()

    def _z(self, j: int) -> float:
        n = self.wins[j] + self.losses[j]
        return (self.wins[j] - self.losses[j]) / math.sqrt(n) if n else 0.0

    def recall(self, j: int) -> float:
        return self.hits[j] / self.compared[j] if self.compared[j] else 0.0

    def _decide(self) -> None:
        ready = [j for j in range(1, len(self.population))
                 if self.compared[j] >= self.min_evaluated]
        best, best_z = 0, self.z
        for j in ready:
            zj = self._z(j)
            # The incumbent's hits on the challenger's events: its hits, less its wins, plus
            # its losses.
            inc_hits = self.hits[j] - self.wins[j] + self.losses[j]
            rel = (self.wins[j] - self.losses[j]) / max(1, inc_hits)
            if zj >= best_z and rel >= self.margin:
                best, best_z = j, zj
        if best:
            self._switch(best)
            return
        for j in ready:
            if self._z(j) <= -self.z or self.compared[j] >= 10 * self.min_evaluated:
                self._replace(j)

    def _switch(self, j: int) -> None:
        old, new = self.population[0], self.population[j]
        self.switches.append({"at_evaluated": self.evaluated, "from": old.as_dict(),
                              "to": new.as_dict(), "z": round(self._z(j), 2)})
        del self.switches[:-20]
        # The new incumbent keeps its place in the race; every challenger is compared anew.
        self.population[0], self.population[j] = new, old
        for i in range(len(self.population)):
            self.wins[i] = self.losses[i] = self.compared[i] = self.hits[i] = 0
        self.retired = []

    def _replace(self, j: int) -> None:
        """Retire challenger j and draw a new ranking next to the incumbent."""
        self.retired.append(self.population[j].as_dict())
        del self.retired[:-64]
        gone = [RankingParams.from_dict(d) for d in self.retired]
        near = [p for p in neighbours_of(self.current, self.max_recent)
                if p not in self.population and p not in gone]
        rng = np.random.default_rng((self.seed, self.draws))
        self.draws += 1
        if not near:  # every neighbour is racing already: two steps away
            first = self.current
            for _ in range(2):
                options = neighbours_of(first, self.max_recent)
                first = options[int(rng.integers(len(options)))]
            if first in self.population or first in gone:
                # Nothing new to try near the incumbent: the retired one races again.
                self.wins[j] = self.losses[j] = self.compared[j] = self.hits[j] = 0
                return
            near = [first]
        self.population[j] = near[int(rng.integers(len(near)))]
        self.wins[j] = self.losses[j] = self.compared[j] = self.hits[j] = 0

    def report(self) -> list[dict]:
        """Every ranking of the population with its recall over the events it was compared on."""
        return [{**p.as_dict(), "recall": round(self.recall(j), 5),
                 "compared": self.compared[j], "incumbent": j == 0}
                for j, p in enumerate(self.population)]

    def state(self) -> dict:
        return {"population": [p.as_dict() for p in self.population],
                "max_recent": self.max_recent, "min_evaluated": self.min_evaluated,
                "z": self.z, "margin": self.margin, "seed": self.seed, "enabled": self.enabled,
                "wins": list(self.wins), "losses": list(self.losses),
                "compared": list(self.compared), "hits": list(self.hits),
                "switches": list(self.switches), "retired": list(self.retired),
                "evaluated": self.evaluated,
                "draws": self.draws}

    @classmethod
    def from_state(cls, state: dict) -> SelfTuner:
        data = dict(state)
        data["population"] = [RankingParams.from_dict(p) for p in state["population"]]
        return cls(**data)
