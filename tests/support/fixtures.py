"""Session-scoped pytest fixtures that start real servers on first use.

A pytest plugin: ``tests/conftest.py`` lists it in ``pytest_plugins``.

Each server fixture yields the running server object (:mod:`support.servers`), whose ``url``
is the connection URL in the project's style; the ``*_url`` fixtures yield just the URL:

* ``kafka``        -> ``kafka://127.0.0.1:19092``     (``.bootstrap_servers``, ``.restart()``)
* ``mongo``        -> ``mongodb://127.0.0.1:27018/recengine_test``
* ``redis_server`` -> ``redis://127.0.0.1:16379/0``
* ``graphite``     -> ``http://127.0.0.1:18080`` (graphite-web), ``.statsd_url`` ->
  ``statsd://127.0.0.1:18125``, plus ``.render()`` / ``.wait_for_datapoints()``

Ports fall back to free ones when the preferred ones are busy, so read URLs from here.
A server that cannot start fails the test with its log tail; nothing is skipped.
Servers are stopped, and their temp data dirs removed, at the end of the session
(set ``RECENGINE_KEEP_SERVER_DATA=1`` to keep the data dirs and logs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from .servers import GraphiteServer, KafkaServer, MongoServer, RedisServer, Server

S = TypeVar("S", bound=Server)


def _serve(server: S) -> Iterator[S]:
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaServer]:
    """A single-node KRaft Kafka broker (``kafka.url``, ``kafka.bootstrap_servers``)."""
    yield from _serve(KafkaServer())


@pytest.fixture(scope="session")
def mongo() -> Iterator[MongoServer]:
    """FerretDB on SQLite speaking the MongoDB protocol (``mongo.url``)."""
    yield from _serve(MongoServer())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server without persistence (``redis_server.url``)."""
    yield from _serve(RedisServer())


@pytest.fixture(scope="session")
def graphite() -> Iterator[GraphiteServer]:
    """carbon-cache + graphite-web + statsd (``graphite.url``, ``graphite.statsd_url``)."""
    yield from _serve(GraphiteServer())


@pytest.fixture(scope="session")
def kafka_url(kafka: KafkaServer) -> str:
    """``kafka://127.0.0.1:PORT``."""
    return kafka.url


@pytest.fixture(scope="session")
def mongo_url(mongo: MongoServer) -> str:
    """``mongodb://127.0.0.1:PORT/recengine_test``."""
    return mongo.url


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0``."""
    return redis_server.url


@pytest.fixture(scope="session")
def statsd_url(graphite: GraphiteServer) -> str:
    """``statsd://127.0.0.1:PORT`` (UDP), flushing to the ``graphite`` fixture's carbon."""
    return graphite.statsd_url


@pytest.fixture(scope="session")
def graphite_url(graphite: GraphiteServer) -> str:
    """graphite-web's base URL, ``http://127.0.0.1:PORT``."""
    return graphite.url
