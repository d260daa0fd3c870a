"""Kafka helpers for tests: produce a stream the way clients do, count what a topic holds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap: str, topic: str, records: Iterable, **config: object) -> int:
    """Produce records (dicts, JSON strings or raw bytes) idempotently, keyed by user id when
    the record has one (one user's events stay in one partition, in order); ``config``
    overrides producer settings. Returns how many were produced."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20, "batch.num.messages": 10000, **config})
    n = 0
    for rec in records:
        if isinstance(rec, dict):
            raw = json.dumps(rec, separators=(",", ":")).encode()
        else:
            raw = rec.encode() if isinstance(rec, str) else rec
        try:
            key = json.loads(raw)["user_id"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            key = None
        while True:
            try:
                p.produce(topic, value=raw, key=key)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        n += 1
    assert p.flush(120) == 0
    return n


def count_records(bootstrap: str, topic: str) -> tuple[int, list]:
    """How many records the topic holds (by watermarks), and the records themselves."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    total = 0
    for p in meta.partitions:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += hi - lo
    records = []
    if total:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(records) < total and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error() is None:
                    records.append(m)
    c.close()
    return total, records


def assert_applied_exactly_once(counters: dict, bootstrap: str, dlq_topic: str, valid: int,
                                malformed: int) -> None:
    """The trainer's final counters and the dead-letter topic after a stream of ``valid`` good
    and ``malformed`` bad events: every event consumed and applied or rejected once, and the
    DLQ holding each reject once, with its reason."""
    assert counters["consumed"] == valid + malformed, counters
    assert counters["applied"] == valid, counters
    assert counters["rejected"] == malformed, counters
    total, records = count_records(bootstrap, dlq_topic)
    assert total == malformed
    keys = [m.key() for m in records]
    assert len(set(keys)) == len(keys) == malformed
    assert all(dict(m.headers())["reason"] for m in records)
