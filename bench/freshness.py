"""Freshness benchmark: time from producing an event for a user to ``/recommend`` for that
user reflecting it, through the production stack on 127.0.0.1.

    python bench/freshness.py [--trials 100]

Starts Kafka, FerretDB (MongoDB protocol) and Redis with the test tooling (tests/support),
a trainer process (Kafka -> model -> Redis + MongoDB + GridFS), the index service and the API
under gunicorn, warms the model with a generated stream, then repeatedly produces one event for
a brand-new user and polls ``/recommend?user_id=…`` every 10 ms until it answers
``based_on: user`` (the user's vector and recent items are served). A background producer keeps
a steady stream of other events flowing meanwhile. The last line is one JSON object with
``p50_s`` and ``p99_s``; target p99 <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import requests
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import KafkaServer, MongoServer, RedisServer  # noqa: E402

from recengine import serve  # noqa: E402
from recengine.backends.kafka import create_topics  # noqa: E402
from recengine.backends.registry import open_artifact_store  # noqa: E402
from recengine.config import Settings  # noqa: E402
from recengine.synth import SynthConfig, generate  # noqa: E402


def _send(p: Producer, topic: str, rec: dict | str) -> None:
    raw = rec if isinstance(rec, str) else json.dumps(rec, separators=(",", ":"))
    key = rec["user_id"].encode() if isinstance(rec, dict) else None
    while True:
        try:
            p.produce(topic, value=raw.encode(), key=key)
            return
        except BufferError:
            p.poll(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--warm-events", type=int, default=50_000)
    ap.add_argument("--background-rate", type=float, default=2000.0, help="events/s")
    args = ap.parse_args()
    with KafkaServer() as kafka, MongoServer() as mongo, RedisServer() as redis_srv, \
            tempfile.TemporaryDirectory() as tmp:
        name = f"fresh{uuid.uuid4().hex[:6]}"
        db = f"{mongo.url.rsplit('/', 1)[0]}/{name}"
        settings = Settings.load({"name": name, "data_dir": tmp, "events_url": kafka.url,
                                  "dlq_url": kafka.url, "users_url": db, "artifacts_url": db,
                                  "cache_url": redis_srv.url}, env={})
        create_topics(settings, partitions=3)
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 0})
        records = [r for r in generate(SynthConfig(events=args.warm_events + 200_000, seed=3))
                   if isinstance(r, dict)]
        for rec in records[:args.warm_events]:
            _send(producer, settings.events_topic, rec)
        producer.flush(60)
        log = open(Path(tempfile.gettempdir()) / f"{name}-trainer.log", "ab")  # noqa: SIM115
        trainer = subprocess.Popen([sys.executable, "-m", "recengine.cli", "trainer"],
                                   env=serve.settings_env(settings), stdout=log, stderr=log)
        store = open_artifact_store(settings.url("artifacts"), name)
        while not store.versions():
            if trainer.poll() is not None:
                raise SystemExit(Path(log.name).read_text()[-3000:])
            time.sleep(0.5)
        index_port, api_port = serve.free_port(), serve.free_port()
        settings = settings.replace(index_url=f"http://127.0.0.1:{index_port}")
        procs = [serve.start("index", settings, index_port), serve.start("api", settings,
                                                                          api_port)]
        stop = threading.Event()
        try:
            serve.wait_ready(f"http://127.0.0.1:{index_port}/readyz", procs[0])
            serve.wait_ready(f"http://127.0.0.1:{api_port}/readyz", procs[1])

            def background() -> None:
                bg = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
                n = args.warm_events
                while not stop.is_set() and n < len(records):
                    t0 = time.perf_counter()
                    for rec in records[n:n + 100]:
                        _send(bg, settings.events_topic, {**rec, "ts": time.time()})
                    n += 100
                    bg.poll(0)
                    time.sleep(max(0.0, 100 / args.background_rate - (time.perf_counter() - t0)))
                bg.flush(10)

            threading.Thread(target=background, daemon=True).start()
            session = requests.Session()
            api = f"http://127.0.0.1:{api_port}/recommend"
            item = records[0]["item_id"]
            lags = []
            for _ in range(args.trials):
                user = f"fresh-{uuid.uuid4().hex[:10]}"
                t0 = time.perf_counter()
                _send(producer, settings.events_topic,
                      {"user_id": user, "item_id": item, "event": "view", "ts": time.time()})
                producer.flush(10)
                while True:
                    body = session.get(api, params={"user_id": user}, timeout=5).json()
                    if body["based_on"] == "user":
                        break
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit(f"user {user} never reflected: {body}")
                    time.sleep(0.01)
                lags.append(time.perf_counter() - t0)
        finally:
            stop.set()
            for p in procs:
                serve.stop(p)
            trainer.send_signal(signal.SIGTERM)
            trainer.wait(120)
    a = np.asarray(lags)
    print(json.dumps({"trials": len(a), "p50_s": round(float(np.percentile(a, 50)), 3),
                      "p99_s": round(float(np.percentile(a, 99)), 3),
                      "max_s": round(float(a.max()), 3),
                      "flush_interval_s": Settings.load({}, env={}).flush_interval_s,
                      "target": {"p99_s_max": 2.0}}))


if __name__ == "__main__":
    main()
