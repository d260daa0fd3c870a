"""statsd metrics named ``recengine.<service>.<metric>``, never blocking or failing a caller.

:class:`Metrics` is the interface and the no-op of ``metrics_url=off``; the statsd client is
:class:`recengine.backends.statsd.StatsdMetrics`.

Every name a service sends is listed in :mod:`recengine.metric_names` (the docs and the
dashboards are generated from there, and a test checks the calls against it).

statsd is UDP: a send to a host that is down is dropped by the kernel, not waited for, and the
socket is non-blocking, so a full send buffer drops the packet too. A host name is resolved in
a background thread (retried until it resolves; metrics sent before are dropped), so a missing
DNS entry neither delays nor fails start-up. Any error while sending is swallowed after being
counted in ``dropped``, because metrics must never take a request or a training step down
with them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from recengine.config import BackendURL

#: Seconds between two sends of a held gauge: under statsd's flushInterval (10 s in the
#: chart), so a statsd with ``deleteIdleStats`` never drops a gauge that is still true.
HOLD_INTERVAL_S = 5.0
#: Seconds between two attempts to resolve the statsd host name.
RESOLVE_RETRY_S = 10.0


class Metrics:
    """No-op metrics (``metrics_url=off``); the base of real clients."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.dropped = 0

    @classmethod
    def from_url(cls, url: BackendURL, service: str) -> Self:
        """Metrics of ``service`` sent where ``url`` says."""
        return cls(service)

    def incr(self, name: str, count: int = 1) -> None:
        """Count ``count`` occurrences."""

    def gauge(self, name: str, value: float) -> None:
        """Set a gauge."""

    def hold(self, name: str, value: float) -> None:
        """Set a gauge and keep sending it every few seconds until it is held at another
        value (for a state that changes rarely, such as the version an index pod serves)."""

    def timing(self, name: str, ms: float) -> None:
        """Record a duration in milliseconds."""

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timing(name, (time.perf_counter() - t0) * 1000.0)

    def close(self) -> None:
        """Stop background sends (held gauges)."""


