"""Reference recall@10 of two simple rankers on an interaction stream (issue #10's yardstick).

Protocol (prequential: test, then learn): for every event whose user was seen before, rank
every item seen so far minus the user's own earlier items; the event is a hit if its item is
among the top 10. A never-seen item, or one the user had before, is a miss.

* **Plain popularity**: all-time event counts, ties broken by first appearance.
* **Incremental item-kNN**: when a user consumes item ``j``, ``C[r, j]`` and ``C[j, r]`` grow
  by ``DISTANCE_DECAY ** (distance - 1)`` for each of the user's last ``PAIR_WINDOW`` items
  ``r`` (distance 1 = the item just before ``j``), and every new weight is multiplied by a
  global exponential decay whose half-life is ``HALF_LIFE_EVENTS`` *events* (not seconds).
  A candidate ``c`` scores ``sum_p RECENCY ** p * C[r_p, c] / sqrt(n[r_p] * n[c])`` over the
  user's last ``RECENT`` items ``r_p`` (newest first, ``p = 0, 1, ...``), ``n`` the decayed
  item counts; ties go to the higher decayed count, then to the earlier item.

Both are exact: every candidate is ranked, nothing is sampled. On MovieLens latest-small
(ratings >= 4, ``../shared/data/movielens-latest-small_pos.tsv``) they give 0.0554 and 0.1151.
Pairing ``j`` with only the last 20 items (``PAIR_WINDOW = RECENT``) gives 0.1093 there: long
histories carry co-occurrence signal beyond the items a user is scored from. Beyond 200 items
the pair weight (``0.95 ** 199``, 4e-5) no longer moves the figure.

The decay is applied by inflating new weights by ``2 ** (t / HALF_LIFE_EVENTS)`` instead of
shrinking old ones, which leaves every ratio above unchanged (the inflation is rescaled before
it could overflow). ``C`` is a dense float64 matrix that grows with the catalogue, so memory
is ``8 * items**2`` bytes: fine up to ~10k items, the size of the streams it is meant for.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

RECENT = 20
"""A user's most recent items a candidate is scored from."""
PAIR_WINDOW = 200
"""A user's most recent items a new item is paired with in the co-occurrence counts."""
DISTANCE_DECAY = 0.95
"""Co-occurrence weight per step between two items of a user's history."""
RECENCY = 0.8
"""Weight per step back of the user's recent items when scoring."""
HALF_LIFE_EVENTS = 50_000.0
"""Half-life of co-occurrence and counts, in events."""
K = 10

_RESCALE_AT = 1e150


def shared_data(name: str) -> Path | None:
    """``shared/data/<name>`` beside the clone (``../shared/data/``) or beside any folder above it.

    The real streams live outside the repository; a worktree sits deeper than the main clone.
    """
    for folder in Path(__file__).resolve().parents:
        path = folder / "shared" / "data" / name
        if path.is_file():
            return path
    return None


def read_tsv(path: str | Path) -> list[tuple[str, str, float]]:
    """``user<TAB>item<TAB>ts`` lines (or ``user<TAB>item<TAB>rating<TAB>ts``), in file order."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3:
                out.append((parts[0], parts[1], float(parts[-1])))
    return out


def _rank(score: np.ndarray, tie: np.ndarray, cand: np.ndarray, i: int) -> int:
    """How many candidates come before item ``i`` by (score, tie) descending, then index."""
    s, t = score[i], tie[i]
    before = (score > s) | ((score == s) & ((tie > t) | ((tie == t) & (np.arange(score.size) < i))))
    return int(np.count_nonzero(before & cand))


def knn_recall(events: Iterable[tuple[Any, Any, Any]]) -> dict[str, float | int]:
    """Prequential recall@10 of the item-kNN and of plain popularity on ``(user, item, ts)``.

    Returns ``recall_at_10`` (kNN), ``popularity_recall_at_10`` and ``evaluated`` (events
    whose user was seen before). Timestamps are not used: the stream's order is its time.
    """
    item_index: dict[Any, int] = {}
    history: dict[Any, list[int]] = {}  # every item of the user, in order
    owned: dict[Any, set[int]] = {}
    cap = 1024
    cooc = np.zeros((cap, cap))
    count = np.zeros(cap)  # plain all-time counts
    decayed = np.zeros(cap)  # decayed counts, in inflated units
    seen = np.zeros(cap, dtype=bool)
    growth = 2.0 ** (1.0 / HALF_LIFE_EVENTS)
    inflation = 1.0
    recency = RECENCY ** np.arange(RECENT)
    distance = DISTANCE_DECAY ** np.arange(PAIR_WINDOW)
    hits_knn = hits_pop = evaluated = 0

    for user, item, _ts in events:
        j = item_index.get(item)
        if j is None:
            j = item_index[item] = len(item_index)
            if j == cap:
                cap *= 2
                grown = np.zeros((cap, cap))
                grown[:j, :j] = cooc
                cooc = grown
                count, decayed, seen = (
                    np.concatenate([a, np.zeros(cap - j, dtype=a.dtype)])
                    for a in (count, decayed, seen)
                )
        hist = history.get(user)
        recent = hist[-RECENT:][::-1] if hist else []  # newest first
        window = hist[-PAIR_WINDOW:][::-1] if hist else []

        # Test.
        if hist is not None:
            evaluated += 1
            mine = owned[user]
            if seen[j] and j not in mine:
                n = len(item_index)
                cand = seen[:n].copy()
                cand[list(mine)] = False
                pop = count[:n]
                hits_pop += _rank(pop, np.zeros(n), cand, j) < K
                norm = np.sqrt(decayed[:n])
                rows = cooc[recent, :n] / norm[recent, None]
                score = recency[: len(recent)] @ rows
                score = np.divide(score, norm, out=np.zeros(n), where=norm > 0)
                hits_knn += _rank(score, decayed[:n], cand, j) < K

        # Learn.
        if hist is None:
            hist = history[user] = []
            owned[user] = set()
        prev = np.array([r for r in window if r != j], dtype=np.int64)
        if prev.size:
            dist = np.array([d for d, r in enumerate(window) if r != j], dtype=np.int64)
            w = distance[dist] * inflation
            np.add.at(cooc, (prev, j), w)
            np.add.at(cooc, (j, prev), w)
        decayed[j] += inflation
        count[j] += 1
        seen[j] = True
        hist.append(j)
        owned[user].add(j)
        inflation *= growth
        if inflation > _RESCALE_AT:
            cooc /= inflation
            decayed /= inflation
            inflation = 1.0

    return {
        "recall_at_10": hits_knn / evaluated if evaluated else 0.0,
        "popularity_recall_at_10": hits_pop / evaluated if evaluated else 0.0,
        "evaluated": evaluated,
    }
