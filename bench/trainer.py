"""Trainer benchmark: learned events per second on one core, with evaluation sampling on, beside
a loop built the way the reference design trains incrementally, on the same synthetic stream.

    python bench/trainer.py                      # 200k events
    python bench/trainer.py --events 500000 --seed 3

The stream comes from ``synth.write_stream`` (a JSON-lines file, malformed lines included) and
the measured path is the trainer's real one: read the file (``FileEventSource.poll``) ->
validate and map ids to rows (``Learner.decode``) -> ``Learner.learn``, with the default
``Settings`` that ``recengine eval``, the demo and the trainer use (so evaluation sampling is
``eval_sample``). Recall@10 is that learner's own prequential measurement (test, then train;
all items seen so far minus the user's own), beside the stronger of the two popularity baselines
(all-time and decayed) that it measures on the same events. Self-tuning is on (the default); the
same learner with it off runs too, so the JSON says what self-tuning costs per event.

The reference loop: an ``nn.Embedding`` GMF whose output is a ``Linear(1, 1)`` over the summed
element-wise product and a sigmoid, MSE towards 1, ``torch.optim.SGD`` (lr 0.001, weight decay
0.1), mini-batches of 10 events, 2 epochs over each window of 500 events. It is slow, so it runs
on a prefix of the stream (``--reference-events``). Its recall@10 is measured prequentially the
same way: before a window is learned, each of its events whose user was seen before ranks all
items seen so far minus that user's items (including the user's earlier events in the window).
Its events per second count only its training steps (not decoding, id mapping or evaluation),
which flatters it. For a like-for-like figure the learner is also evaluated on every event of
that prefix (``recall_at_10_on_reference_prefix``).

Everything runs pinned to one CPU (``--cpu``) with one thread for torch and BLAS. An untimed
warm-up loads the compiled kernels first; the learner and the reference then run ``--repeat``
times each, interleaved, and the best run of each is compared. Timings are wall-clock;
``cpu_events_per_second`` (process time) is printed too, since a shared machine stretches wall
time. The last line printed is one JSON object.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recengine.backends.files import FileEventSource  # noqa: E402
from recengine.config import Settings  # noqa: E402
from recengine.sources import decode  # noqa: E402
from recengine.synth import SynthConfig, write_stream  # noqa: E402
from recengine.trainer.learner import Learner  # noqa: E402

TARGET_EPS = 200_000
TARGET_SPEEDUP = 20.0
TARGET_RECALL_RATIO = 1.5


def run_learner(path: Path, settings: Settings, limit: int | None = None,
                eval_fraction: float | None = None) -> dict:
    """The trainer's path over the file: poll -> Learner.decode -> Learner.learn."""
    source = FileEventSource(path, settings.events_format, follow=False)
    learner = Learner(settings)
    events = rejected = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while limit is None or events < limit:
        want = settings.batch_size if limit is None else min(settings.batch_size, limit - events)
        raws = source.poll(want, 0.0)
        if not raws:
            break
        batch, bad = learner.decode(raws, source.fmt)
        rejected += len(bad)
        learner.learn(batch, eval_fraction=eval_fraction)
        events += len(batch)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    source.close()
    tr = learner.tracker
    return {"events": events, "rejected": rejected, "wall_s": wall, "cpu_s": cpu,
            "events_per_second": events / wall, "cpu_events_per_second": events / cpu,
            "evaluated": tr.evaluated, "recall_at_10": tr.recall,
            "popularity_recall_at_10": tr.popularity_recall,
            "users": len(learner.users), "items": len(learner.items)}


class ReferenceGMF(torch.nn.Module):
    """The reference design's model: embeddings, a Linear(1, 1) output and a sigmoid."""

    def __init__(self, users: int, items: int, dim: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(users, dim)
        self.item = torch.nn.Embedding(items, dim)
        self.out = torch.nn.Linear(1, 1)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        dot = (self.user(u) * self.item(i)).sum(-1, keepdim=True)
        return torch.sigmoid(self.out(dot)).squeeze(-1)

    @torch.no_grad()
    def scores(self, u: torch.Tensor, n_items: int) -> torch.Tensor:
        dot = self.user(u) @ self.item.weight[:n_items].T
        return torch.sigmoid(dot * self.out.weight[0, 0] + self.out.bias[0])


def run_reference(path: Path, events: int, dim: int, window: int = 500, minibatch: int = 10,
                  epochs: int = 2, k: int = 10, seed: int = 0) -> dict:
    """The reference loop on the first ``events`` valid events, with its prequential recall."""
    torch.manual_seed(seed)
    source = FileEventSource(path, follow=False)
    users: list[str] = []
    items: list[str] = []
    while len(users) < events:
        raws = source.poll(min(8192, events - len(users)), 0.0)
        if not raws:
            break
        batch, _ = decode(raws, source.fmt)
        users += batch.users
        items += batch.items
    source.close()
    umap: dict[str, int] = {}
    imap: dict[str, int] = {}
    u_all = np.array([umap.setdefault(x, len(umap)) for x in users], dtype=np.int64)
    i_all = np.array([imap.setdefault(x, len(imap)) for x in items], dtype=np.int64)
    # Tables sized for the whole prefix up front: no growth or optimizer rebuilds to pay for.
    model = ReferenceGMF(len(umap), len(imap), dim)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, weight_decay=0.1)
    loss_fn = torch.nn.MSELoss()
    u_t, i_t = torch.from_numpy(u_all), torch.from_numpy(i_all)
    seen: dict[int, set[int]] = {}
    n_items_seen = 0  # items get rows in order of first appearance
    evaluated = hits = 0
    train_s = train_cpu = 0.0
    for start in range(0, len(u_all), window):
        stop = min(start + window, len(u_all))
        # Test: every event of the window whose user was seen before, with the model as it was
        # before the window; the user's items and the items seen so far include earlier events
        # of the window.
        known_items = n_items_seen
        for n in range(start, stop):
            u, i = int(u_all[n]), int(i_all[n])
            user_seen = seen.setdefault(u, set())
            if user_seen:
                evaluated += 1
                if i < known_items:
                    scores = model.scores(u_t[n:n + 1], known_items)[0]
                    scores[list(user_seen)] = -1.0
                    top = torch.topk(scores, min(k, known_items)).indices
                    hits += int(bool((top == i).any()))
            user_seen.add(i)
            known_items = max(known_items, i + 1)
        n_items_seen = known_items
        # Train: 2 epochs over the window in mini-batches of 10, MSE towards 1.
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(epochs):
            for b in range(start, stop, minibatch):
                ub, ib = u_t[b:min(b + minibatch, stop)], i_t[b:min(b + minibatch, stop)]
                opt.zero_grad()
                loss = loss_fn(model(ub, ib), torch.ones(len(ub)))
                loss.backward()
                opt.step()
        train_s += time.perf_counter() - t0
        train_cpu += time.process_time() - c0
    return {"events": len(u_all), "train_s": train_s,
            "events_per_second": len(u_all) / train_s if train_s else 0.0,
            "cpu_events_per_second": len(u_all) / train_cpu if train_cpu else 0.0,
            "evaluated": evaluated, "recall_at_10": hits / evaluated if evaluated else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--reference-events", type=int, default=20_000,
                   help="prefix of the stream the (slow) reference loop learns")
    p.add_argument("--reference-dim", type=int, default=None,
                   help="embedding dimension of the reference loop (default: the learner's dim)")
    p.add_argument("--repeat", type=int, default=2,
                   help="timed runs of the learner; the best is reported (recall is identical)")
    p.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one)")
    args = p.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1] if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    settings = Settings.load({"follow": False}, env={})
    ref_dim = settings.dim if args.reference_dim is None else args.reference_dim
    with tempfile.TemporaryDirectory(prefix="recengine-bench-") as tmp:
        path = Path(tmp, "events.jsonl")
        summary = write_stream(path, SynthConfig(events=args.events, seed=args.seed))
        print(f"stream: {summary.events} events, {summary.malformed} malformed lines, "
              f"{summary.users} users, {summary.items} items", file=sys.stderr)
        runs = []
        # Side by side: learner, reference, learner again (and so on), in one process.
        # Untimed warm-up: loads the compiled (numba) kernels, cached on disk after the first
        # run on a machine, so that every timed run measures the steady state.
        run_learner(path, settings, limit=2 * settings.batch_size)
        refs = []
        for n in range(max(1, args.repeat)):
            runs.append(run_learner(path, settings))
            r = runs[-1]
            print(f"learner run {n + 1}: {r['events_per_second']:,.0f} events/s "
                  f"({r['cpu_events_per_second']:,.0f} per CPU second), recall@10 "
                  f"{r['recall_at_10']:.4f} vs popularity {r['popularity_recall_at_10']:.4f}",
                  file=sys.stderr)
            # The reference gets the same treatment: as many runs, interleaved, best kept.
            refs.append(run_reference(path, args.reference_events, ref_dim))
            print(f"reference run {n + 1}: {refs[-1]['events_per_second']:,.0f} events/s on "
                  f"{refs[-1]['events']} events, recall@10 {refs[-1]['recall_at_10']:.4f}",
                  file=sys.stderr)
        # The cost of self-tuning: the same learner racing one ranking instead of a
        # population, as many runs, interleaved with nothing else; best of each.
        untuned_settings = settings.replace(self_tuning=False)
        untuned = [run_learner(path, untuned_settings) for _ in range(max(1, args.repeat))]
        reference = max(refs, key=lambda r: r["events_per_second"])
        prefix = run_learner(path, settings, limit=reference["events"], eval_fraction=1.0)
    best = max(runs, key=lambda r: r["events_per_second"])
    eps, ref_eps = best["events_per_second"], reference["events_per_second"]
    recall, pop = best["recall_at_10"], best["popularity_recall_at_10"]
    plain = min(untuned, key=lambda r: r["cpu_s"])
    tuning_us = (best["cpu_s"] - plain["cpu_s"]) / best["events"] * 1e6
    print(f"self-tuning off: {plain['events_per_second']:,.0f} events/s "
          f"({plain['cpu_events_per_second']:,.0f} per CPU second); self-tuning costs "
          f"{tuning_us:.3f} us of CPU per event", file=sys.stderr)
    result = {
        "events": best["events"],
        "rejected": best["rejected"],
        "evaluated": best["evaluated"],
        "eval_sample": settings.eval_sample,
        "batch_size": settings.batch_size,
        "cpu": cpu,
        "events_per_second": round(eps),
        "events_per_second_runs": [round(r["events_per_second"]) for r in runs],
        "cpu_events_per_second": round(best["cpu_events_per_second"]),
        "reference_events_per_second": round(ref_eps),
        "reference_events_per_second_runs": [round(r["events_per_second"]) for r in refs],
        "reference_cpu_events_per_second": round(reference["cpu_events_per_second"]),
        "reference_dim": ref_dim,
        "reference_events": reference["events"],
        "reference_note": (f"reference loop measured on the first {reference['events']} events "
                           "(it is slow); its time counts only its training steps"),
        "speedup_vs_reference": round(eps / ref_eps, 1) if ref_eps else None,
        "cpu_speedup_vs_reference": (round(best["cpu_events_per_second"]
                                           / reference["cpu_events_per_second"], 1)
                                     if reference["cpu_events_per_second"] else None),
        "self_tuning_population": settings.tuning_population,
        "untuned_events_per_second": round(plain["events_per_second"]),
        "untuned_cpu_events_per_second": round(plain["cpu_events_per_second"]),
        "self_tuning_cpu_us_per_event": round(tuning_us, 3),
        "recall_at_10": round(recall, 4),
        "popularity_recall_at_10": round(pop, 4),
        "untuned_recall_at_10": round(plain["recall_at_10"], 4),
        "recall_vs_popularity": round(recall / pop, 2) if pop else None,
        "reference_recall_at_10": round(reference["recall_at_10"], 4),
        "reference_evaluated": reference["evaluated"],
        "recall_at_10_on_reference_prefix": round(prefix["recall_at_10"], 4),
        "popularity_recall_at_10_on_reference_prefix": round(prefix["popularity_recall_at_10"],
                                                             4),
        "targets": {
            "events_per_second": eps >= TARGET_EPS,
            "speedup_vs_reference": bool(ref_eps) and eps / ref_eps >= TARGET_SPEEDUP,
            "recall_vs_popularity": bool(pop) and recall / pop >= TARGET_RECALL_RATIO,
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
