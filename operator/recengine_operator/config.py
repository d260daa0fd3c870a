"""One operator configuration object, built from ``RECENGINE_OPERATOR_*`` environment variables.

Declared and read the way the services' settings are (:mod:`recengine.declare`: the same parser
for every type, the same one-line errors, secrets kept out of ``repr``); the operator's code
reads its configuration here and never ``os.environ``. Every value is validated here, so a bad
one stops the operator at start-up with one readable line (:class:`recengine.errors.ConfigError`).

Settings that belong to one RecEngine (which Deployment, which policy, the quality gate, the
progress deadline) are in its ``spec``, not here: this object holds what is the same for every
resource the operator watches.
"""

from __future__ import annotations

from recengine.config import parse_url
from recengine.declare import URL, Declared
from recengine.errors import ConfigError

ENV_PREFIX = "RECENGINE_OPERATOR_"
#: Settings read from the variable the recengine services read too (no ``OPERATOR_``).
SHARED_ENV = {"metrics_url": "RECENGINE_METRICS_URL"}


class Config(Declared, env_prefix=ENV_PREFIX, env_names=SHARED_ENV):
    """What the operator needs to know besides the RecEngine resources themselves."""

    interval_s: float = 5.0
    """Seconds between two reconciliations of one RecEngine by the timer (desired vs actual)."""

    idle_s: float = 1.0
    """Seconds a RecEngine must stay unchanged before the timer ticks (0: tick at once); the
    create/update handlers react to a change immediately, the timer then takes over."""

    history_limit: int = 20
    """Entries kept in ``status.history`` (the oldest are dropped)."""

    container: str = "index"
    """Name of the container in the index Deployment's pod template that serves a version."""

    api_timeout_s: float = 10.0
    """Timeout of one Kubernetes API request made by the operator's own client."""

    watch_timeout_s: float = 300.0
    """Server-side timeout of kopf's watch requests (a silently broken watch is renewed)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch when started as ``python -m recengine_operator`` (comma-separated;
    empty: every namespace). ``kopf run`` takes ``--namespace`` / ``--all-namespaces`` instead."""

    peering: str = "recengine"
    """KopfPeering object that keeps several operator replicas from acting at once, when started
    as ``python -m recengine_operator``; empty: standalone (one replica only). ``kopf run``
    takes ``--peering NAME`` / ``--standalone`` instead."""

    priority: int | None = None
    """Peering priority of this replica; unset: a random one, so that every replica differs
    (kopf pauses all but the replica with the highest priority; equal priorities would let two
    act at once). ``kopf run --priority`` wins when given."""

    liveness: str = ""
    """Liveness endpoint kopf serves when started as ``python -m recengine_operator``, e.g.
    ``http://0.0.0.0:8080/healthz``; empty: none."""

    metrics_url: URL = "off"
    """Where the operator sends its statsd metrics (``statsd://host:8125``; ``off``: nowhere).
    Read from ``RECENGINE_METRICS_URL``, the variable every recengine service reads."""

    def __post_init__(self) -> None:
        checks = [
            (self.interval_s > 0, "interval_s must be > 0"),
            (self.idle_s >= 0, "idle_s must be >= 0"),
            (self.history_limit >= 1, "history_limit must be >= 1"),
            (bool(self.container), "container must not be empty"),
            (self.api_timeout_s > 0, "api_timeout_s must be > 0"),
            (self.watch_timeout_s > 0, "watch_timeout_s must be > 0"),
            (self.priority is None or self.priority >= 0, "priority must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"operator configuration: {message}")
        parse_url("metrics", self.metrics_url)  # ConfigError naming the URL if it is bad

