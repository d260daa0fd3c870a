"""How real the synthetic stream is: reference rankers on it at several clocks and on real data.

For each time scale, the generator's stream (valid events only) is ranked with the exact
prequential protocol of ``tests/support/knn_reference.py``: plain all-time popularity and the
simple item-kNN, recall@10. The real stream (MovieLens latest-small, ratings >= 4, from
``../shared/data/``) is measured the same way. Also printed: the shape of each stream
(users, items, mean seconds between events, history lengths, the top tenth of the items'
share of events). On real data popularity reaches 0.03-0.08 and the kNN 2-3.7x popularity.
Both rankers see only the order of the events, so the three clocks give the same figures;
``--engine`` also runs ``recengine eval`` on each stream, whose half-lives are in seconds.

    python bench/synth_realism.py --events 200000 --scales seconds,minutes,days [--engine]

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

from support.knn_reference import knn_recall, read_tsv, shared_data  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scales", default="seconds,minutes,days",
                    help="comma-separated time scales (names or seconds)")
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
        if args.engine:
            rows[-1].update(engine_recall(events))
    real = shared_data(REAL)
    if real is not None:
        events = read_tsv(real)
        rows.append(measure(f"real {REAL}", events))
        if args.engine:
            rows[-1].update(engine_recall(events))

    cols = ("stream", "events", "users", "items", "mean_gap_s", "history_median",
            "top_tenth_items_share", "popularity_recall_at_10", "knn_recall_at_10", "ratio",
            "engine_recall_at_10", "engine_popularity_recall_at_10")
    cols = tuple(c for c in cols if c in rows[0])
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in cols))
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
