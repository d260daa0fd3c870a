"""Recommendation quality with the defaults, on every real stream we have and on generated ones.

For each stream: ``recengine eval --json`` with the default settings (nothing tuned per
stream: the engine tunes itself as it reads), its recall@10 beside the stronger of the two
popularity baselines (plain all-time counts and decayed counts, measured on the same events)
and the ratio. Streams: every ``*_pos.tsv`` under ``--data`` (default ``../shared/data``, the
real public streams; see its README) and generated streams at several time scales (events
seconds, minutes and hours apart: the same world at three clocks, which a ranking whose
decays count events must score identically; 200,000 events a day apart would span 550
years, past any valid timestamp, so the slowest clock is hours — MovieLens, at about four
hours between events, is the real stream at that end).

Targets (issue #10): >= 2.0x the stronger baseline on every stream, >= 0.12 on
``movielens-latest-small_pos``. The last line is one JSON object::

    {"streams": {"<name>": {"recall_at_10", "popularity_recall_at_10", "ratio",
                            "events_per_second", ...}}, "min_ratio": ...}

Usage: ``python bench/quality.py [--data DIR] [--events 200000] [--scales seconds,minutes,hours]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECENGINE = [sys.executable, "-m", "recengine.cli"]


def _eval(path: Path, fmt: str) -> dict:
    out = subprocess.run([*RECENGINE, "eval", "--events", str(path), "--format", fmt,
                          "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _generate(out: Path, events: int, scale: str, seed: int) -> None:
    subprocess.run([*RECENGINE, "generate", "--out", str(out), "--events", str(events),
                    "--time-scale", scale, "--seed", str(seed), "--malformed-rate", "0"],
                   capture_output=True, text=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--events", type=int, default=200_000,
                    help="events per generated stream")
    ap.add_argument("--scales", default="seconds,minutes,hours")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    streams: list[tuple[str, Path, str]] = [
        (p.name.removesuffix(".tsv"), p, "tsv") for p in sorted(Path(args.data).glob("*_pos.tsv"))]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="recengine-quality-") as tmp:
        for scale in filter(None, args.scales.split(",")):
            path = Path(tmp, f"synth-{scale}.jsonl")
            _generate(path, args.events, scale, args.seed)
            streams.append((f"synth-{scale}", path, "jsonl"))
        print(f"{'stream':<34} {'events':>8} {'recall@10':>9} {'plain pop':>9} "
              f"{'decayed':>8} {'ratio':>6} {'events/s':>9}  ranking in force", flush=True)
        for name, path, fmt in streams:
            t0 = time.perf_counter()
            r = _eval(path, fmt)
            wall = time.perf_counter() - t0
            ranking = r["ranking"]
            results[name] = {
                "recall_at_10": round(r["recall_at_10"], 4),
                "popularity_recall_at_10": round(r["popularity_recall_at_10"], 4),
                "plain_popularity_recall_at_10": round(r["plain_popularity_recall_at_10"], 4),
                "decayed_popularity_recall_at_10": round(r["decayed_popularity_recall_at_10"], 4),
                "ratio": round(r["ratio"], 3),
                "events": r["events"],
                "evaluated": r["evaluated"],
                "events_per_second": round(r["events_per_second"]),
                "wall_s": round(wall, 1),
                "ranking": ranking,
                "switches": r["tuning"]["switches"],
            }
            print(f"{name:<34} {r['events']:>8} {r['recall_at_10']:>9.4f} "
                  f"{r['plain_popularity_recall_at_10']:>9.4f} "
                  f"{r['decayed_popularity_recall_at_10']:>8.4f} {r['ratio']:>5.2f}x "
                  f"{r['events_per_second']:>9.0f}  "
                  + " ".join(f"{k}={v}" for k, v in ranking.items()), flush=True)
    ratios = [r["ratio"] for r in results.values()]
    print(json.dumps({"streams": results, "min_ratio": min(ratios) if ratios else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
