"""End to end on the production backends: a generated stream produced to Kafka -> trainer ->
versions in GridFS, users in MongoDB and Redis -> index service and API under gunicorn ->
/recommend reflects events produced seconds earlier."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from support.api import wait_for_user_answer
from support.gunicorn import gunicorn_services
from support.streams import produce

from recengine import serve
from recengine.backends.kafka import create_topics
from recengine.backends.registry import open_artifact_store
from recengine.config import Settings
from recengine.synth import SynthConfig, generate

pytestmark = pytest.mark.integration

RECENGINE = [sys.executable, "-m", "recengine.cli"]


@dataclass
class Stack:
    settings: Settings
    api: str
    index: str
    trainer: subprocess.Popen
    known_item: str


@pytest.fixture(scope="module")
def stack(kafka, mongo, redis_server, tmp_path_factory) -> Iterator[Stack]:
    name = f"e2e{uuid.uuid4().hex[:6]}"
    db = f"{mongo.url.rsplit('/', 1)[0]}/{name}"
    data_dir = tmp_path_factory.mktemp("e2e")
    settings = Settings.load({
        "name": name, "data_dir": str(data_dir), "events_url": kafka.url,
        "dlq_url": kafka.url, "users_url": db, "artifacts_url": db,
        "cache_url": redis_server.url, "publish_every_events": 20_000,
        "flush_interval_s": 0.3, "batch_latency_s": 0.05}, env={})
    create_topics(settings, partitions=3)
    records = list(generate(SynthConfig(events=30_000, users=2_000, items=1_000, seed=4)))
    produce(kafka.bootstrap_servers, settings.events_topic, records)
    env = {**serve.settings_env(settings), "PYTHONUNBUFFERED": "1"}
    log = open(data_dir / "trainer.log", "ab")  # noqa: SIM115
    trainer = subprocess.Popen([*RECENGINE, "trainer"], env=env, stdout=log, stderr=log)
    store = open_artifact_store(settings.url("artifacts"), name)
    deadline = time.monotonic() + 300
    while not store.versions() and time.monotonic() < deadline:
        assert trainer.poll() is None, (data_dir / "trainer.log").read_text()[-3000:]
        time.sleep(0.5)
    assert store.versions(), "no version published to GridFS"
    item = next(r["item_id"] for r in records if isinstance(r, dict))
    try:
        with gunicorn_services(settings, data_dir) as services:
            yield Stack(services.settings, services.api, services.index, trainer, item)
    finally:
        trainer.send_signal(signal.SIGTERM)
        trainer.wait(120)


def test_index_serves_a_version_from_gridfs(stack: Stack) -> None:
    v = requests.get(f"{stack.index}/version", timeout=5).json()
    assert v["version"] >= 1 and v["items"] > 100


def test_recommend_reflects_events_produced_seconds_earlier(stack: Stack, kafka) -> None:
    user = f"new-{uuid.uuid4().hex[:8]}"
    produce(kafka.bootstrap_servers, stack.settings.events_topic,
            [{"user_id": user, "item_id": stack.known_item, "event": "click", "ts": time.time()}])
    t0 = time.monotonic()
    body = wait_for_user_answer(stack.api, user, 30)
    assert stack.known_item not in {x["item_id"] for x in body["items"]}
    assert time.monotonic() - t0 < 10


def test_posted_events_go_through_kafka_to_the_model(stack: Stack) -> None:
    user = f"poster-{uuid.uuid4().hex[:8]}"
    r = requests.post(f"{stack.api}/events", timeout=10, json=[
        {"user_id": user, "item_id": stack.known_item, "ts": time.time()},
        {"user_id": "", "item_id": "x", "ts": 1}])
    assert r.status_code == 202 and r.json()["accepted"] == 1
    body = wait_for_user_answer(stack.api, user, 30)
    assert stack.known_item not in {x["item_id"] for x in body["items"]}


def test_the_trainer_log_says_nothing_went_wrong(stack: Stack) -> None:
    log = Path(stack.settings.data_dir, "trainer.log").read_text()
    assert "Traceback" not in log


def _traffic(api: str, users: list[str], seconds: float) -> list[tuple[int, list[str]]]:
    out = []
    session = requests.Session()
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        r = session.get(f"{api}/recommend", params={"user_id": users[n % len(users)]},
                        timeout=5)
        body = r.json()
        out.append((r.status_code, body.get("degraded", [])))
        n += 1
    return out


def test_mongo_and_redis_restarted_under_traffic(stack: Stack, mongo, redis_server) -> None:
    users = ["stranger-1", *[f"u{n}" for n in range(1, 40)]]
    healthy = _traffic(stack.api, users, 1.0)
    assert {s for s, _ in healthy} == {200}

    redis_server.stop()
    redis_down = _traffic(stack.api, users, 2.0)
    assert {s for s, _ in redis_down} == {200}
    assert all("cache" in d for _, d in redis_down[-10:])

    mongo.stop()
    both_down = _traffic(stack.api, users, 2.0)
    assert {s for s, _ in both_down} <= {503, 200}
    assert both_down[-1][0] == 503

    redis_server.start()
    mongo_down = _traffic(stack.api, users, 3.0)
    assert {s for s, _ in mongo_down[-20:]} == {200}, mongo_down[-20:]

    mongo.start()
    deadline = time.monotonic() + 30
    recovered: list = []
    while time.monotonic() < deadline:
        recovered = _traffic(stack.api, users, 1.0)
        if all(s == 200 and not d for s, d in recovered[-10:]):
            break
    assert all(s == 200 and not d for s, d in recovered[-10:]), recovered[-10:]
    every = healthy + redis_down + both_down + mongo_down + recovered
    assert {s for s, _ in every} <= {200, 503}
