"""Start and stop the real servers the integration tests talk to.

Every server runs as a plain process on 127.0.0.1 (no Docker), with its own data directory
that also holds its logs. Before the first start, each class calls
``tools/infra/install.sh <component>``, which installs or builds the server once and caches it
under ``~/.cache/recengine/`` (``$RECENGINE_CACHE``), so warm starts take seconds.

Servers:

* :class:`KafkaServer`    Apache Kafka 3.9 in KRaft mode (one combined broker + controller).
* :class:`MongoServer`    FerretDB 1.x on SQLite, speaking the MongoDB wire protocol.
* :class:`RedisServer`    Debian's redis-server.
* :class:`GraphiteServer` carbon-cache + graphite-web (gunicorn) + statsd (node).

Each server prefers fixed, non-default ports (its ``default_ports``); when one of them is
already taken (another test session, a developer's ``tools/infra/up.sh``) a free port is
picked instead, so always read the URL from the server object. ``start()`` waits until the
server answers its own protocol and raises :class:`ServerError` with the log tail when it
does not; ``stop()`` terminates by PID, then kills; ``restart()`` keeps ports and data.

One module per server (``kafka``, ``mongo``, ``redis``, ``graphite``) on ``base``. Run
``python -m support.servers up|down|status`` from ``tests/`` (or use ``tools/infra/up.sh``) to
keep a set of servers running for development.
"""

from __future__ import annotations

from .base import ManagedProcess, Server, ServerError, tail
from .graphite import GraphiteServer
from .kafka import KafkaServer
from .mongo import MongoServer
from .redis import RedisServer

#: The servers by the names ``up``, ``down`` and the PID registry use.
SERVER_CLASSES: dict[str, type[Server]] = {
    "kafka": KafkaServer,
    "mongo": MongoServer,
    "redis": RedisServer,
    "graphite": GraphiteServer,
}

__all__ = [
    "SERVER_CLASSES",
    "GraphiteServer",
    "KafkaServer",
    "ManagedProcess",
    "MongoServer",
    "RedisServer",
    "Server",
    "ServerError",
    "tail",
]
