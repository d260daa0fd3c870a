"""Smoke tests of the real servers started by tests/support (Kafka, FerretDB, Redis, Graphite).

They prove the test tooling works end to end: each fixture installs (cached), starts and
stops its server, and a real client can use it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    futures[topic].result(timeout=60)


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    errors: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in messages:
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, _msg: err and errors.append(err)
        )
    assert producer.flush(30) == 0, "messages still in the producer queue"
    assert not errors, errors


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _unique("smoke"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append(msg)
    finally:
        consumer.close()
    return received


def test_kafka_url(kafka: Any) -> None:
    parts = urlsplit(kafka.url)
    assert parts.scheme == "kafka"
    assert f"{parts.hostname}:{parts.port}" == kafka.bootstrap_servers


def test_kafka_produce_consume(kafka: Any) -> None:
    topic = _unique("smoke")
    _create_topic(kafka.bootstrap_servers, topic, partitions=2)
    sent = [(f"k{i}".encode(), f"event {i}".encode()) for i in range(10)]
    _produce(kafka.bootstrap_servers, topic, sent)
    received = _consume(kafka.bootstrap_servers, topic, len(sent))
    assert sorted((m.key(), m.value()) for m in received) == sorted(sent)


def test_mongo_crud_and_gridfs(mongo: Any) -> None:
    import gridfs
    import pymongo

    assert mongo.url.startswith("mongodb://127.0.0.1:")
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo.url, serverSelectionTimeoutMS=5000
    )
    try:
        db = client.get_default_database()
        assert db.name == "recengine_test"
        items = db[_unique("items")]
        items.create_index([("item_id", pymongo.ASCENDING)], unique=True)
        items.insert_one({"item_id": 1, "title": "first", "tags": ["a", "b"]})
        items.insert_many([{"item_id": i, "title": f"item {i}"} for i in range(2, 6)])
        assert items.find_one({"item_id": 1}, {"_id": 0}) == {
            "item_id": 1,
            "title": "first",
            "tags": ["a", "b"],
        }
        assert items.count_documents({"item_id": {"$gte": 3}}) == 3
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            items.insert_one({"item_id": 1})

        fs = gridfs.GridFS(db, collection=_unique("fs"))
        payload = bytes(range(256)) * 4096  # 1 MiB, several GridFS chunks
        file_id = fs.put(payload, filename="model.bin")
        assert fs.get(file_id).read() == payload
        assert fs.find_one({"filename": "model.bin"}).length == len(payload)
        items.drop()
    finally:
        client.close()


def test_redis_set_get_pipeline(redis_server: Any) -> None:
    import redis

    assert redis_server.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_server.url)
    try:
        key = _unique("smoke")
        assert client.set(key, b"value")
        assert client.get(key) == b"value"
        pipe = client.pipeline(transaction=True)
        pipe.incr(f"{key}:n").incrby(f"{key}:n", 41).expire(f"{key}:n", 60).get(f"{key}:n")
        assert pipe.execute() == [1, 42, True, b"42"]
        client.delete(key, f"{key}:n")
    finally:
        client.close()


@pytest.mark.observability
def test_statsd_counter_reaches_graphite(graphite: Any) -> None:
    import statsd

    parts = urlsplit(graphite.statsd_url)
    assert parts.scheme == "statsd"
    client = statsd.StatsClient(parts.hostname, parts.port, prefix="test")
    client.incr("x", 3)
    client.timing("latency", 12)
    points = graphite.wait_for_datapoints(
        "stats_counts.test.x", lambda pts: sum(v for v, _ in pts) >= 3, timeout=15
    )
    assert sum(v for v, _ in points) == 3
    graphite.wait_for_datapoints("stats.timers.test.latency.count", timeout=15)


def test_kafka_restart_keeps_topic_data(kafka: Any) -> None:
    topic = _unique("restart")
    _create_topic(kafka.bootstrap_servers, topic)
    before = [(b"k", f"before {i}".encode()) for i in range(5)]
    _produce(kafka.bootstrap_servers, topic, before)
    ports = dict(kafka.ports)

    kafka.restart()

    assert kafka.ports == ports
    after = [(b"k", f"after {i}".encode()) for i in range(5)]
    _produce(kafka.bootstrap_servers, topic, after)
    received = _consume(kafka.bootstrap_servers, topic, len(before) + len(after))
    assert [(m.key(), m.value()) for m in received] == before + after
