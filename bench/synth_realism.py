"""How real the synthetic stream is: reference rankers on it at several clocks and on real data.

For each time scale, the generator's stream (valid events only) is ranked with the exact
prequential protocol of ``tests/support/knn_reference.py``: plain all-time popularity and the
simple item-kNN, recall@10. The real stream (MovieLens latest-small, ratings >= 4, from
``../shared/data/``) is measured the same way. Also printed: the shape of each stream
(users, items, mean seconds between events, history lengths, the top tenth of the items'
share of events). On real data popularity reaches 0.03-0.08 and the kNN 2-3.7x popularity.
Both rankers see only the order of the events, so the three clocks give the same figures.
``--gmf`` adds a naive pointwise GMF (weak on real data: at best popularity); ``--engine``
runs ``recengine eval`` on each stream (a learner whose decays run on seconds differs
between the clocks).

    python bench/synth_realism.py --events 200000 --scales seconds,minutes,hours [--gmf] [--engine]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "services"), str(ROOT / "tests")]

from support.knn_reference import K, knn_recall, read_tsv, shared_data  # noqa: E402

from recengine.synth import SynthConfig, generate, parse_time_scale  # noqa: E402

REAL = "movielens-latest-small_pos.tsv"


def measure(name: str, events: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """The reference recalls and the shape of one stream."""
    t0 = time.perf_counter()
    result = knn_recall(events)
    per_user = np.array(list(Counter(e[0] for e in events).values()))
    per_item = np.sort(np.array(list(Counter(e[1] for e in events).values())))[::-1]
    pop, knn = result["popularity_recall_at_10"], result["recall_at_10"]
    return {
        "stream": name,
        "events": len(events),
        "users": int(per_user.size),
        "items": int(per_item.size),
        "mean_gap_s": round((events[-1][2] - events[0][2]) / max(len(events) - 1, 1), 2),
        "history_median": float(np.median(per_user)),
        "history_p90": float(np.quantile(per_user, 0.9)),
        "top_tenth_items_share": round(float(per_item[: max(1, per_item.size // 10)].sum()
                                             / per_item.sum()), 3),
        "evaluated": result["evaluated"],
        "popularity_recall_at_10": round(pop, 4),
        "knn_recall_at_10": round(knn, 4),
        "ratio": round(knn / pop, 2) if pop else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def naive_gmf_recall(events: Sequence[tuple[str, str, float]], *, bias: bool, dim: int = 16,
                     lr: float = 0.05, reg: float = 0.002, negatives: int = 4,
                     seed: int = 0) -> float:
    """Prequential recall@10 (the reference protocol) of a naive pointwise GMF.

    Test, then learn: score ``p_u . q_i (+ b_i)`` over every item seen so far minus the user's
    own; then one SGD step of the logistic loss towards 1 for the event and towards 0 for
    ``negatives`` items drawn uniformly from those seen. With ``bias`` the item bias learns
    popularity, so it is popularity plus what the dot product adds.
    """
    rng = np.random.default_rng(seed)
    items: dict[str, int] = {}
    users: dict[str, int] = {}
    owned: list[set[int]] = []
    q = rng.normal(0.0, 0.1, (1024, dim))
    b = np.zeros(1024)
    p = rng.normal(0.0, 0.1, (1024, dim))
    hits = evaluated = 0
    for user, item, _ts in events:
        j = items.get(item)
        fresh = j is None
        if j is None:
            j = items[item] = len(items)
            if j == len(q):
                q = np.vstack([q, rng.normal(0.0, 0.1, q.shape)])
                b = np.concatenate([b, np.zeros(b.size)])
        u = users.get(user)
        if u is not None:
            evaluated += 1
            if not fresh and j not in owned[u]:
                n = len(items)
                score = q[:n] @ p[u] + (b[:n] if bias else 0.0)
                cand = np.ones(n, dtype=bool)
                cand[list(owned[u])] = False
                hits += np.count_nonzero(cand & (score > score[j])) < K
        else:
            u = users[user] = len(users)
            owned.append(set())
            if u == len(p):
                p = np.vstack([p, rng.normal(0.0, 0.1, p.shape)])
        for k, it in enumerate([j, *rng.integers(0, len(items), negatives).tolist()]):
            x = p[u] @ q[it] + (b[it] if bias else 0.0)
            g = 1.0 / (1.0 + np.exp(-x)) - (k == 0)
            pu = p[u].copy()
            p[u] -= lr * (g * q[it] + reg * p[u])
            q[it] -= lr * (g * pu + reg * q[it])
            if bias:
                b[it] -= lr * g
        owned[u].add(j)
    return hits / evaluated if evaluated else 0.0


def engine_recall(events: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """``recengine eval --json`` on the stream written as TSV: the engine's recall and its
    (decayed) popularity's."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.tsv"
        with path.open("w", encoding="utf-8") as fh:
            fh.writelines(f"{u}\t{i}\t{ts!r}\n" for u, i, ts in events)
        out = subprocess.run([sys.executable, "-m", "recengine.cli", "eval", "--events",
                              str(path), "--json"], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "services")})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"engine_recall_at_10": round(result["recall_at_10"], 4),
            "engine_popularity_recall_at_10": round(result["popularity_recall_at_10"], 4)}


def extras(row: dict[str, Any], events: Sequence[tuple[str, str, float]],
           args: argparse.Namespace) -> None:
    """The optional columns: the naive GMF's recall and the engine's."""
    if args.gmf:
        row["gmf_recall_at_10"] = round(naive_gmf_recall(events, bias=True), 4)
        row["gmf_no_bias_recall_at_10"] = round(naive_gmf_recall(events, bias=False), 4)
    if args.engine:
        row.update(engine_recall(events))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scales", default="seconds,minutes,hours",
                    help="comma-separated time scales (names or seconds)")
    ap.add_argument("--gmf", action="store_true",
                    help="also measure a naive pointwise GMF, with and without item bias")
    ap.add_argument("--engine", action="store_true",
                    help="also run recengine eval on each stream")
    args = ap.parse_args()

    rows = []
    for scale in args.scales.split(","):
        config = SynthConfig(events=args.events, seed=args.seed,
                             time_scale=parse_time_scale(scale.strip()))
        events = [(r["user_id"], r["item_id"], r["ts"]) for r in generate(config)
                  if isinstance(r, dict)]
        rows.append(measure(f"synth {scale.strip()}", events))
        extras(rows[-1], events, args)
    real = shared_data(REAL)
    if real is not None:
        events = read_tsv(real)
        rows.append(measure(f"real {REAL}", events))
        extras(rows[-1], events, args)

    cols = ("stream", "events", "users", "items", "mean_gap_s", "history_median",
            "top_tenth_items_share", "popularity_recall_at_10", "knn_recall_at_10", "ratio",
            "gmf_recall_at_10", "gmf_no_bias_recall_at_10", "engine_recall_at_10",
            "engine_popularity_recall_at_10")
    cols = tuple(c for c in cols if c in rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in cols))
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
