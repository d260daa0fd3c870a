"""Trainer replicas on real Kafka and MongoDB (FerretDB): one learns, one stands by; the stream
moves to the standby when the active one is killed, and back on a clean handover, and every
event is applied exactly once across all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.streams import assert_applied_exactly_once, produce
from support.waiting import wait_until

from recengine.backends.kafka import create_topics
from recengine.backends.registry import open_artifact_store, open_lease
from recengine.config import Settings, parse_url
from recengine.sources import decode
from recengine.statecodec import decode as decode_state
from recengine.synth import SynthConfig, generate

pytestmark = pytest.mark.integration

RECENGINE = [sys.executable, "-m", "recengine.cli"]
TTL_S = 3.0


class Replica:
    """One ``recengine trainer`` process under a fixed instance name."""

    def __init__(self, instance: str, env: dict, log: Path) -> None:
        self.instance = instance
        self.env = {**env, "RECENGINE_INSTANCE": instance}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*RECENGINE, "trainer"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def test_the_standby_takes_over_on_a_crash_and_a_clean_handover_without_loss(
        kafka, mongo_url, tmp_path) -> None:
    name = f"ha{uuid.uuid4().hex[:6]}"
    s = Settings.load({"name": name, "data_dir": str(tmp_path), "events_url": kafka.url,
                       "dlq_url": kafka.url, "artifacts_url": mongo_url}, env={})
    create_topics(s, partitions=3)
    lines = list(generate(SynthConfig(events=60_000, seed=5, malformed_rate=0.005)))
    raw = [json.dumps(x, separators=(",", ":")) if isinstance(x, dict) else x for x in lines]
    good, bad = decode([x.encode() for x in raw], "jsonl")
    total, valid, malformed = len(raw), len(good), len(bad)
    chunks = [raw[len(raw) * k // 4: len(raw) * (k + 1) // 4] for k in range(4)]

    artifacts = open_artifact_store(parse_url("artifacts", mongo_url), name)
    lease = open_lease(parse_url("artifacts", mongo_url), name)

    def counters() -> dict:
        latest = artifacts.latest_checkpoint()
        if latest is None:
            return {}
        return decode_state(latest[1])["counters"]

    def holder() -> str | None:
        st = lease.current()
        return st.holder if st is not None and st.expires > time.time() else None

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RECENGINE_NAME": name,
           "RECENGINE_DATA_DIR": str(tmp_path), "RECENGINE_EVENTS_URL": kafka.url,
           "RECENGINE_DLQ_URL": kafka.url, "RECENGINE_ARTIFACTS_URL": mongo_url,
           "RECENGINE_LEASE_TTL_S": str(TTL_S), "RECENGINE_CHECKPOINT_INTERVAL_S": "0.5",
           "RECENGINE_CHECKPOINT_EVERY_EVENTS": "4000", "RECENGINE_PUBLISH_EVERY_EVENTS": "30000"}
    a = Replica("replica-a", env, tmp_path / "a.log")
    b = Replica("replica-b", env, tmp_path / "b.log")
    try:
        produce(kafka.bootstrap_servers, s.events_topic, chunks[0])
        a.start()
        wait_until(lambda: holder() == "replica-a" and counters().get("consumed", 0) > 0,
                   "replica-a to lead and checkpoint", 120, interval_s=0.3)
        b.start()
        wait_until(lambda: "standing by: replica-a holds the trainer lease" in b.output(),
                   "replica-b to stand by", 60, interval_s=0.3)
        # The kill lands mid-stream whatever the machine's speed: replica-a has checkpointed
        # part of the second chunk, and the rest of it is produced only after the kill.
        half = len(chunks[1]) // 2
        produce(kafka.bootstrap_servers, s.events_topic, chunks[1][:half])
        wait_until(lambda: counters().get("consumed", 0) > len(chunks[0]),
                   "replica-a to checkpoint part of the second chunk", 120, interval_s=0.1)
        epoch_a = lease.current().epoch  # type: ignore[union-attr]
        a.kill()  # mid-stream: it held partitions, offsets and unflushed work
        before = counters().get("consumed", 0)
        assert len(chunks[0]) < before <= len(chunks[0]) + half
        produce(kafka.bootstrap_servers, s.events_topic, chunks[1][half:])

        # The standby takes over once the lease expires, from the latest checkpoint.
        wait_until(lambda: holder() == "replica-b", "replica-b to take the lease", 60,
                   interval_s=0.3)
        assert lease.current().epoch > epoch_a  # type: ignore[union-attr]
        produce(kafka.bootstrap_servers, s.events_topic, chunks[2])
        wait_until(lambda: counters().get("consumed", 0) >= sum(map(len, chunks[:3])),
                   "replica-b to consume what replica-a left and what came after", 180,
                   interval_s=0.3)

        # replica-a comes back: it stands by behind replica-b ...
        a.start()
        wait_until(lambda: a.output().count("standing by: replica-b holds") >= 1,
                   "the restarted replica-a to stand by", 60, interval_s=0.3)
        # ... and a clean stop of replica-b hands the stream over at once, without waiting
        # for the lease to expire; what arrives next is replica-a's to learn.
        assert b.stop() == 0
        assert "released the trainer lease" in b.output()
        wait_until(lambda: holder() == "replica-a", "replica-a to take over on release",
                   3 * TTL_S, interval_s=0.3)
        produce(kafka.bootstrap_servers, s.events_topic, chunks[3])
        wait_until(lambda: counters().get("consumed", 0) >= total, "the whole stream", 180,
                   interval_s=0.3)
        assert a.stop() == 0
    finally:
        for r in (a, b):
            if r.proc is not None and r.proc.poll() is None:
                r.kill()

    assert_applied_exactly_once(counters(), kafka.bootstrap_servers, s.dlq_topic, valid,
                                malformed)
    assert "lost the trainer lease" not in a.output() + b.output()
    artifacts.close()
