"""Kafka for real: topics, the consumer-group source, the dead-letter topic, the producer,
and the trainer killed with SIGKILL over and over in the middle of a 200k-event stream."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.streams import assert_applied_exactly_once, count_records, produce

from recengine.backends.files import FileArtifactStore
from recengine.backends.kafka import KafkaEventSink, create_topics
from recengine.config import Settings
from recengine.events import validate
from recengine.sources import decode
from recengine.statecodec import decode as decode_state
from recengine.synth import SynthConfig, generate

pytestmark = pytest.mark.integration

RECENGINE = [sys.executable, "-m", "recengine.cli"]


def _settings(kafka_url: str, tmp_path: Path, name: str, **extra: object) -> Settings:
    return Settings.load({"name": name, "data_dir": str(tmp_path), "events_url": kafka_url,
                          "dlq_url": kafka_url, **extra}, env={})


def test_topics_are_created_idempotently(kafka, tmp_path) -> None:
    s = _settings(kafka.url, tmp_path, f"t{uuid.uuid4().hex[:8]}")
    first = create_topics(s, partitions=3)
    assert all(v.startswith("created") for v in first.values()) and len(first) == 2
    again = create_topics(s, partitions=3)
    assert all(v.startswith("exists") for v in again.values())


def test_posted_events_are_acknowledged_keyed_by_user(kafka, tmp_path) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    s = _settings(kafka.url, tmp_path, name)
    create_topics(s, partitions=3)
    sink = KafkaEventSink(s.url("events"), s.events_topic)
    events = [validate({"user_id": f"u{n % 5}", "item_id": f"i{n}", "ts": 1.7e9 + n})
              for n in range(50)]
    sink.append(events)
    total, records = count_records(kafka.bootstrap_servers, s.events_topic)
    assert total == 50
    partitions: dict[bytes, set[int]] = {}
    for m in records:
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions.values())  # one user, one partition: ordered


def _latest_counters(artifacts: FileArtifactStore) -> dict:
    latest = artifacts.latest_checkpoint()
    if latest is None:
        return {}
    return decode_state(latest[1])["counters"]


def test_trainer_killed_ten_times_applies_every_event_exactly_once(kafka, tmp_path) -> None:
    name = f"crash{uuid.uuid4().hex[:6]}"
    s = _settings(kafka.url, tmp_path, name)
    create_topics(s, partitions=3)
    lines = list(generate(SynthConfig(events=200_000, seed=21, malformed_rate=0.005)))
    raw = [json.dumps(x, separators=(",", ":")) if isinstance(x, dict) else x for x in lines]
    good, bad = decode([x.encode() for x in raw], "jsonl")
    valid, malformed = len(good), len(bad)
    chunks = [raw[len(raw) * k // 11: len(raw) * (k + 1) // 11] for k in range(11)]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RECENGINE_NAME": name,
           "RECENGINE_DATA_DIR": str(tmp_path), "RECENGINE_EVENTS_URL": kafka.url,
           "RECENGINE_DLQ_URL": kafka.url, "RECENGINE_CHECKPOINT_INTERVAL_S": "0.5",
           "RECENGINE_CHECKPOINT_EVERY_EVENTS": "5000", "RECENGINE_PUBLISH_EVERY_EVENTS": "80000"}
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    rng = random.Random(7)
    kills = 0
    log = open(tmp_path / "trainer.log", "ab")  # noqa: SIM115
    mid_stream = 0
    while kills < 10:
        # More of the stream arrives while the trainer runs, so every kill lands mid-stream.
        produce(kafka.bootstrap_servers, s.events_topic, chunks[kills])
        proc = subprocess.Popen([*RECENGINE, "trainer"], env=env, stdout=log, stderr=log)
        time.sleep(rng.uniform(2.0, 4.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        produced = sum(len(c) for c in chunks[:kills])
        mid_stream += _latest_counters(artifacts).get("consumed", 0) < produced
    assert mid_stream >= 5, "most kills must interrupt a trainer with events left to apply"
    produce(kafka.bootstrap_servers, s.events_topic, chunks[10])
    proc = subprocess.Popen([*RECENGINE, "trainer"], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if _latest_counters(artifacts).get("consumed", 0) >= valid + malformed:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    assert_applied_exactly_once(_latest_counters(artifacts), kafka.bootstrap_servers,
                                s.dlq_topic, valid, malformed)


def test_a_broker_restart_in_the_middle_of_a_stream_loses_nothing(kafka, tmp_path) -> None:
    name = f"restart{uuid.uuid4().hex[:6]}"
    s = _settings(kafka.url, tmp_path, name)
    create_topics(s, partitions=3)
    lines = list(generate(SynthConfig(events=60_000, seed=9, malformed_rate=0.005)))
    raw = [json.dumps(x, separators=(",", ":")) if isinstance(x, dict) else x for x in lines]
    good, bad = decode([x.encode() for x in raw], "jsonl")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RECENGINE_NAME": name,
           "RECENGINE_DATA_DIR": str(tmp_path), "RECENGINE_EVENTS_URL": kafka.url,
           "RECENGINE_DLQ_URL": kafka.url, "RECENGINE_CHECKPOINT_INTERVAL_S": "0.5"}
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    half = len(raw) // 2
    produce(kafka.bootstrap_servers, s.events_topic, raw[:half])
    log = open(tmp_path / "trainer.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([*RECENGINE, "trainer"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while _latest_counters(artifacts).get("consumed", 0) < half // 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        kafka.restart()
        produce(kafka.bootstrap_servers, s.events_topic, raw[half:])
        deadline = time.monotonic() + 300
        while _latest_counters(artifacts).get("consumed", 0) < len(raw):
            assert time.monotonic() < deadline, _latest_counters(artifacts)
            assert proc.poll() is None, (tmp_path / "trainer.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    assert proc.returncode == 0
    counters = _latest_counters(artifacts)
    assert (counters["applied"], counters["rejected"]) == (len(good), len(bad))
    total, _ = count_records(kafka.bootstrap_servers, s.dlq_topic)
    assert total == len(bad)


def test_a_poll_records_the_next_offset_of_every_partition_it_read(kafka, tmp_path) -> None:
    """The checkpoint position must name every partition a batch came from, or a restart
    would read those partitions again (found by the kill -9 test)."""
    from recengine.backends.registry import open_source

    name = f"pos{uuid.uuid4().hex[:6]}"
    s = _settings(kafka.url, tmp_path, name)
    create_topics(s, partitions=3)
    raw = [json.dumps({"user_id": f"u{n}", "item_id": "i", "ts": 1.7e9}) for n in range(300)]
    produce(kafka.bootstrap_servers, s.events_topic, raw)
    source = open_source(s)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 300 and time.monotonic() < deadline:
            got += source.poll(1000, 1.0)
        offsets = source.position()["offsets"]
    finally:
        source.close()
    _, records = count_records(kafka.bootstrap_servers, s.events_topic)
    per_partition: dict[int, int] = {}
    for m in records:
        per_partition[m.partition()] = max(per_partition.get(m.partition(), -1), m.offset())
    assert {int(p): o for p, o in offsets.items()} == {p: o + 1 for p, o in
                                                       per_partition.items()}
    assert len(per_partition) == 3
