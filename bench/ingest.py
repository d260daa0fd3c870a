"""Ingest benchmark: events per second from Kafka into the model, end to end, beside the raw
confluent-kafka consume rate of the same topic, measured in the same run.

    python bench/ingest.py [--events 500000] [--partitions 3]

Starts a real Kafka broker on 127.0.0.1 with the test tooling (tests/support), produces a
generated stream, then (1) consumes the whole topic with a bare confluent-kafka consumer
(batch ``consume``, no decoding) and (2) runs the trainer over the same topic with its default
settings (decode, validate, vocabulary, learn, prequential evaluation sampling, dead letters),
stopping once every event is consumed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import KafkaServer  # noqa: E402
from support.streams import produce  # noqa: E402

from recengine.backends.kafka import create_topics  # noqa: E402
from recengine.config import Settings  # noqa: E402
from recengine.synth import SynthConfig, generate  # noqa: E402
from recengine.trainer.run import build_trainer  # noqa: E402


def raw_consume(bootstrap: str, topic: str, total: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "max.partition.fetch.bytes": 4 * 1024 * 1024})
    c.subscribe([topic])
    seen = 0
    t0 = None
    while seen < total:
        msgs = c.consume(num_messages=2048, timeout=1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        seen += sum(1 for m in msgs if m.error() is None)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return total / elapsed


def trainer_rate(settings: Settings, total: int) -> tuple[float, dict]:
    trainer = build_trainer(settings)
    stop = threading.Event()
    t0 = None

    def progress(t) -> None:  # type: ignore[no-untyped-def]
        nonlocal t0
        if t0 is None:
            t0 = time.perf_counter() - 0.0
        if t.c.consumed >= total:
            stop.set()

    start = time.perf_counter()
    trainer.run(stop, on_progress=progress)
    elapsed = time.perf_counter() - (t0 or start)
    trainer.close()
    tr = trainer.learner.tracker
    return trainer.c.consumed / elapsed, {
        "applied": trainer.c.applied, "rejected": trainer.c.rejected,
        "recall_at_10": tr.recall, "popularity_recall_at_10": tr.popularity_recall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    with KafkaServer() as kafka, tempfile.TemporaryDirectory() as tmp:
        name = f"bench{uuid.uuid4().hex[:6]}"
        settings = Settings.load({"name": name, "data_dir": tmp, "events_url": kafka.url,
                                  "dlq_url": kafka.url, "publish_interval_s": 3600,
                                  "publish_every_events": 10**9}, env={})
        create_topics(settings, args.partitions)
        total = produce(kafka.bootstrap_servers, settings.events_topic,
                        generate(SynthConfig(events=args.events, seed=args.seed, users=20_000,
                                             items=10_000)),
                        **{"linger.ms": 50, "compression.type": "lz4"})
        raw = raw_consume(kafka.bootstrap_servers, settings.events_topic, total)
        rate, extra = trainer_rate(settings, total)
    result = {"events": total, "events_per_second": round(rate),
              "raw_consume_per_second": round(raw), "ratio_to_raw": round(rate / raw, 3),
              "targets": {"events_per_second_min": 50_000, "ratio_to_raw_min": 0.3}, **extra}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
