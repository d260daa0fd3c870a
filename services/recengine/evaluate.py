"""``recengine eval``: the prequential evaluation of the trainer on a file.

Protocol: replay the file in order in micro-batches; for every event whose user was seen
before, rank all items seen so far minus the user's earlier items (including their earlier
events in the same micro-batch), count a hit when the event's item is in the top 10 (an item
never seen before is a miss), then learn. Embeddings, neighbours and popularity used to rank a
micro-batch are those from before it; each user's recent and seen items are exact per event.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from recengine.backends.registry import open_event_file
from recengine.config import Settings
from recengine.trainer.learner import Learner


def evaluate_file(path: Path, settings: Settings, fmt: str = "auto", progress: bool = False,
                  plot: str | None = None, eval_fraction: float = 1.0) -> dict:
    if fmt != "auto":
        settings = settings.replace(events_format=fmt)
    source = open_event_file(path, settings.replace(follow=False))
    learner = Learner(settings.replace(eval_k=10), seen_limit=None)
    size = path.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="eval", disable=not progress)
    events = rejected = 0
    learn_s = 0.0
    t0 = time.perf_counter()
    while True:
        raws = source.poll(settings.eval_batch_size, 0.0)
        if not raws:
            break
        batch, bad = learner.decode(raws, source.fmt)
        rejected += len(bad)
        events += len(batch)
        stats = learner.learn(batch, eval_fraction=eval_fraction)
        learn_s += stats.seconds
        bar.update(source.position()["offset"] - bar.n)
        r, p = learner.tracker.rolling()
        bar.set_postfix(recall=f"{r:.3f}", popularity=f"{p:.3f}")
    bar.close()
    source.close()
    seconds = time.perf_counter() - t0
    tr = learner.tracker
    result = {
        "events": events,
        "evaluated": tr.evaluated,
        "rejected": rejected,
        "recall_at_10": tr.recall,
        "popularity_recall_at_10": tr.popularity_recall,
        "plain_popularity_recall_at_10": tr.plain_popularity_recall,
        "decayed_popularity_recall_at_10": tr.decayed_popularity_recall,
        "ratio": tr.recall / tr.popularity_recall if tr.popularity_recall else 0.0,
        "ranking": learner.tuner.current.as_dict(),
        "tuning": {"switches": len(learner.tuner.switches),
                   "population": learner.tuner.report()},
        "events_per_second": events / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "items": len(learner.items),
        "users": len(learner.users),
    }
    if plot:
        write_plot(tr.curve, plot)
    return result


def write_plot(curve: list[tuple[int, float, float]], path: str) -> None:
    """Rolling recall@10 of the model and of popularity over the stream, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if curve:
        xs, model, pop = zip(*curve, strict=True)
        ax.plot(xs, model, label="model (GMF + item-to-item)")
        ax.plot(xs, pop, label="popularity (the stronger of all-time and decayed)")
    ax.set_xlabel("events")
    ax.set_ylabel("rolling recall@10")
    ax.set_title("Prequential recall@10")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
