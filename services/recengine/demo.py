"""``recengine demo``: the whole engine on one machine with embedded defaults, no servers.

Generate a stream -> train incrementally while evaluating -> publish versions -> start the index
service and the API as real gunicorn processes on free local ports -> ask for a known user, an
unknown user with a known item, and a stranger -> print the answers and a summary -> stop.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from recengine import serve
from recengine.config import Settings
from recengine.synth import SynthConfig, write_stream
from recengine.trainer.run import build_trainer


def _say(quiet: bool, *parts: Any) -> None:
    if not quiet:
        print(*parts, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    t_start = time.perf_counter()
    quiet = bool(args.json)
    user_dir = overrides.pop("data_dir", None)
    data_dir = Path(user_dir or tempfile.mkdtemp(prefix="recengine-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    events_path = data_dir / "events.jsonl"
    config = SynthConfig(events=args.events, seed=args.seed)
    publish_every = max(1000, args.events // 2)
    settings = Settings.load({"data_dir": str(data_dir), "follow": False,
                              "publish_every_events": publish_every, **overrides})
    procs = []
    try:
        _say(quiet, f"1/4 generating {args.events:,} synthetic events in {events_path}")
        summary = write_stream(events_path, config, "jsonl")

        _say(quiet, "2/4 training incrementally, evaluating prequentially (test, then train)")
        trainer = build_trainer(settings)
        bar = tqdm(total=args.events, unit="ev", desc="train", disable=quiet, file=sys.stderr)

        def progress(t: Any) -> None:
            bar.update(t.c.consumed - bar.n)
            r, p = t.learner.tracker.rolling()
            bar.set_postfix(recall=f"{r:.3f}", popularity=f"{p:.3f}",
                            versions=t.c.versions_published)

        t0 = time.perf_counter()
        trainer.run(on_progress=progress)
        train_s = time.perf_counter() - t0
        bar.close()
        lr = trainer.learner
        tracker = lr.tracker

        _say(quiet, "3/4 starting the index service and the API under gunicorn")
        index_port, api_port = serve.free_port(), serve.free_port()
        settings = settings.replace(index_url=f"http://127.0.0.1:{index_port}")
        procs.append(serve.start("index", settings, index_port,
                                 log_path=str(data_dir / "index.log")))
        procs.append(serve.start("api", settings, api_port, log_path=str(data_dir / "api.log")))
        serve.wait_ready(f"http://127.0.0.1:{index_port}/readyz", procs[0])
        serve.wait_ready(f"http://127.0.0.1:{api_port}/readyz", procs[1])
        api = f"http://127.0.0.1:{api_port}"

        _say(quiet, "4/4 asking the API")
        counts = collections.Counter(lr.users.ids[int(r)] for r in range(len(lr.users))
                                     if lr.user_events[r] >= 5)
        known_user = next(iter(counts), lr.users.ids[0])
        popular_item = lr.popular(1)[0][0]
        queries = {
            "known_user": {"user_id": known_user, "k": 5},
            "unknown_user_known_item": {"user_id": "someone-new", "item_id": popular_item,
                                        "k": 5},
            "stranger": {"user_id": "a-stranger", "k": 5},
        }
        answers: dict[str, Any] = {}
        for name, params in queries.items():
            r = requests.get(f"{api}/recommend", params=params, timeout=10)
            r.raise_for_status()
            body = r.json()
            answers[name] = {"query": params, "based_on": body["based_on"],
                             "version": body["version"],
                             "items": [x["item_id"] for x in body["items"]]}
            _say(quiet, f"  GET /recommend {params} -> based_on={body['based_on']} "
                        f"version={body['version']}")
            for x in body["items"]:
                meta = x.get("metadata") or {}
                _say(quiet, f"      {x['item_id']:>8}  {x['score']:.3f}  "
                            f"{meta.get('category', '')} {meta.get('title', '')}")
        result = {
            "events": summary.events if hasattr(summary, "events") else args.events,
            "applied": trainer.c.applied,
            "rejected": trainer.c.rejected,
            "evaluated": tracker.evaluated,
            "recall_at_10": tracker.recall,
            "popularity_recall_at_10": tracker.popularity_recall,
            "events_per_second": trainer.c.consumed / train_s if train_s else 0.0,
            "versions_published": trainer.c.versions_published,
            "api": answers,
            "data_dir": str(data_dir),
            "seconds": round(time.perf_counter() - t_start, 2),
        }
        ratio = result["recall_at_10"] / max(result["popularity_recall_at_10"], 1e-12)
        _say(quiet, f"\nrecall@10: model {result['recall_at_10']:.4f} vs popularity "
                    f"{result['popularity_recall_at_10']:.4f} ({ratio:.2f}x), "
                    f"{result['versions_published']} versions published, "
                    f"{result['rejected']} malformed events in {settings.dlq_url}")
        if args.serve:
            # SIGTERM (e.g. from a process manager) stops the services like Ctrl-C does.
            signal.signal(signal.SIGTERM, _interrupt)
            _say(quiet, f"\nAPI on {api}  (try {api}/recommend?user_id={known_user})  "
                        f"index on http://127.0.0.1:{index_port}; Ctrl-C stops")
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        if args.json:
            print(json.dumps(result))
        return 0
    finally:
        for p in procs:
            serve.stop(p)
        if not (args.keep or args.serve or user_dir):
            shutil.rmtree(data_dir, ignore_errors=True)

