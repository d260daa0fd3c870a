"""A hostile stream through the trainer on a real Kafka: zero crashes, every hostile record in
the dead-letter topic once with its reason (a record too large for a dead letter with its
headers keeps its head and its size), the clean events all applied."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from recengine.backends.kafka import DLQ_MAX_VALUE_BYTES, create_topics
from recengine.config import Settings
from recengine.trainer.run import build_trainer

T0 = 1_700_000_000


def _hostile(now: float) -> list[tuple[bytes, str]]:
    event = '{{"user_id":"u1","item_id":"i1","ts":{}}}'
    return [
        (event.format("1" + "0" * 400).encode(), "too large a number"),
        (b"[" * 5000, "nested 5000 deep"),
        (event.format(int(now + 86_400 * 30)).encode(), "in the future"),
        (event.format(-5).encode(), "non-negative"),
        (event.format("NaN").encode(), "non-negative"),
        (b'{"user_id":"\xff\xfe","item_id":"i1","ts":1700000000}', "invalid JSON"),
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"t":"'
          + "x" * 1_040_000 + '"}}').encode(), "larger than 65536"),
        (('{"user_id":"' + "u" * 10_000 + '","item_id":"i1","ts":1700000000}').encode(),
         "longer than 256"),
    ]


def test_hostile_records_on_kafka_go_to_the_dlq_once_and_the_trainer_keeps_going(
        kafka, tmp_path: Path) -> None:
    from support.streams import count_records

    name = f"hostile{uuid.uuid4().hex[:6]}"
    s = Settings.load({"name": name, "data_dir": str(tmp_path), "events_url": kafka.url,
                       "dlq_url": kafka.url, "metrics_url": "off", "batch_size": 50,
                       "publish_every_events": 10**9}, env={})
    create_topics(s, partitions=1)
    cases = _hostile(time.time())
    clean = [json.dumps({"user_id": f"u{n % 30}", "item_id": f"i{n % 50}", "ts": T0 + n})
             .encode() for n in range(600)]
    records = clean[:100] + [line for line, _ in cases] + clean[100:]
    # A producer allowed records up to the broker's limit (~1 MiB), above the 1 MB a default
    # producer (the trainer's dead-letter one) may send.
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True, "message.max.bytes": 1_048_000})
    for raw in records:
        producer.produce(s.events_topic, value=raw)
    assert producer.flush(30) == 0

    trainer = build_trainer(s)
    stop = threading.Event()
    deadline = time.monotonic() + 120

    def progress(t: object) -> None:
        if trainer.c.consumed >= len(records) or time.monotonic() > deadline:
            stop.set()

    trainer.run(stop, on_progress=progress)
    trainer.close()
    assert trainer.c.consumed == len(records)
    assert trainer.c.applied == len(clean) and trainer.c.rejected == len(cases)

    total, dead = count_records(kafka.bootstrap_servers, s.dlq_topic)
    assert total == len(cases)
    dead.sort(key=lambda m: int(dict(m.headers())["source-offset"]))
    for m, (line, reason) in zip(dead, cases, strict=True):
        headers = dict(m.headers())
        assert reason in headers["reason"].decode()
        if len(line) > DLQ_MAX_VALUE_BYTES:
            assert m.value() == line[:DLQ_MAX_VALUE_BYTES]
            assert int(headers["truncated-from"]) == len(line)
        else:
            assert m.value() == line
