"""The one place backends are built: a URL's scheme names the implementation of each role.

:data:`BACKENDS` maps, per role, a scheme to a ``"module:Class"`` path (as kombu's
``TRANSPORT_ALIASES`` does); the class is imported only when a URL names it, so the embedded
defaults need none of the production clients (confluent-kafka, pymongo, redis), and a missing
client is one readable line, not a traceback. Each class builds itself with the ``from_url``
its interface declares; the rest of the code sees only the interfaces (:mod:`recengine.stores`,
:mod:`recengine.artifacts`, :mod:`recengine.lease`, :mod:`recengine.sources`,
:mod:`recengine.metrics`), and no module but this one names an implementation.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, cast

from recengine.artifacts import ArtifactStore
from recengine.config import BackendURL, Settings
from recengine.errors import ConfigError
from recengine.lease import Lease
from recengine.metrics import Metrics
from recengine.sources import DeadLetterSink, EventSink, EventSource
from recengine.stores import Cache, UserStore

#: Role -> URL scheme -> ``"module:Class"`` of the backend.
BACKENDS: dict[str, dict[str, str]] = {
    "users": {"sqlite": "recengine.backends.sqlite:SQLiteUserStore",
              "mongodb": "recengine.backends.mongo:MongoUserStore"},
    "cache": {"memory": "recengine.backends.memory:MemoryCache",
              "redis": "recengine.backends.redis_cache:RedisCache"},
    "artifacts": {"file": "recengine.backends.files:FileArtifactStore",
                  "mongodb": "recengine.backends.mongo:GridFSArtifactStore"},
    "lease": {"file": "recengine.backends.files:FileLease",
              "mongodb": "recengine.backends.mongo:MongoLease"},
    "events": {"file": "recengine.backends.files:FileEventSource",
               "kafka": "recengine.backends.kafka:KafkaEventSource"},
    "dlq": {"file": "recengine.backends.files:FileDeadLetter",
            "kafka": "recengine.backends.kafka:KafkaDeadLetter"},
    "sink": {"file": "recengine.backends.files:FileEventSink",
             "kafka": "recengine.backends.kafka:KafkaEventSink"},
    "metrics": {"off": "recengine.metrics:Metrics",
                "statsd": "recengine.backends.statsd:StatsdMetrics"},
}

#: Roles whose backend follows another role's URL: the lease lives in the artifact store,
#: ``POST /events`` appends to the stream the trainer reads.
URL_OF: dict[str, str] = {"lease": "artifacts", "sink": "events"}

#: Kafka administration (``recengine topics create``), which has no interface of its own.
TOPIC_ADMIN = "recengine.backends.kafka:create_topics"


def _load(path: str, url: BackendURL) -> Any:
    """The object ``"module:name"`` names, importing its module now (``url``: what asks for
    it, named in the error when its client library is missing)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "recengine":
            raise  # our own module is missing: a bug, not a setting
        raise ConfigError(
            f"{url.role} URL {url.redacted!r} needs the {exc.name} client library, which is not "
            "installed (pip install 'recengine[backends]')") from None
    return getattr(module, attr)


def backend_class(role: str, url: BackendURL) -> type:
    """The class that serves ``role`` at ``url``; ConfigError if no backend has its scheme."""
    path = BACKENDS[role].get(url.scheme)
    if path is None:
        raise ConfigError(f"{url.role} URL {url.redacted!r}: unsupported scheme {url.scheme!r}")
    return cast(type, _load(path, url))


def open_user_store(url: BackendURL, name: str = "recengine") -> UserStore:
    """The user store ``url`` names (``name``: the engine's, prefixing Mongo collections)."""
    return cast(type[UserStore], backend_class("users", url)).from_url(url, name)


def open_cache(url: BackendURL, name: str = "recengine") -> Cache:
    """The cache ``url`` names (``name``: the engine's, prefixing Redis keys)."""
    return cast(type[Cache], backend_class("cache", url)).from_url(url, name)


def open_artifact_store(url: BackendURL, name: str = "recengine") -> ArtifactStore:
    """The artifact store ``url`` names (``name``: the engine's, prefixing Mongo collections)."""
    return cast(type[ArtifactStore], backend_class("artifacts", url)).from_url(url, name)


def open_lease(url: BackendURL, name: str = "recengine") -> Lease:
    """The trainer lease kept in the artifact store ``url`` names."""
    return cast(type[Lease], backend_class("lease", url)).from_url(url, name)


def open_source(settings: Settings) -> EventSource:
    """The event stream the trainer reads (``events_url``)."""
    url = settings.url("events")
    return cast(type[EventSource], backend_class("events", url)).from_url(url, settings)


def open_event_file(path: str | Path, settings: Settings) -> EventSource:
    """A file of events read as the stream, in place of ``events_url`` (``recengine eval``):
    the path as it is, without the quoting a ``file://`` URL would need."""
    url = BackendURL("events", f"file://{path}", "file", "", None, str(path), {})
    return cast(type[EventSource], backend_class("events", url)).from_url(url, settings)


def open_dead_letter(settings: Settings, source: EventSource | None = None) -> DeadLetterSink:
    """Where the rejects of ``source`` go (``dlq_url``)."""
    url = settings.url("dlq")
    return cast(type[DeadLetterSink], backend_class("dlq", url)).from_url(url, settings, source)


def open_event_sink(settings: Settings) -> EventSink:
    """Where ``POST /events`` appends (the stream of ``events_url``)."""
    url = settings.url("events")
    return cast(type[EventSink], backend_class("sink", url)).from_url(url, settings)


def open_metrics(url: BackendURL, service: str) -> Metrics:
    """The metrics of ``service`` (``metrics_url``; ``off`` sends nothing)."""
    return cast(type[Metrics], backend_class("metrics", url)).from_url(url, service)


def create_topics(settings: Settings, partitions: int,
                  replication: int = 1) -> dict[str, str]:
    """Create the events and dead-letter topics if missing; returns topic -> outcome."""
    url = settings.url("events")
    if url.scheme != "kafka":
        raise ConfigError("topics create needs a kafka:// events URL (--events-url)")
    created: dict[str, str] = _load(TOPIC_ADMIN, url)(settings, partitions, replication)
    return created
