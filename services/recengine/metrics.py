"""statsd metrics named ``recengine.<service>.<metric>``, never blocking or failing a caller.

statsd is UDP: a send to a host that is down is dropped by the kernel, not waited for. Any
error while sending (DNS, socket) is swallowed after being counted, because metrics must never
take a request or a training step down with them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from recengine.config import BackendURL


class Metrics:
    """No-op metrics (``metrics_url=off``); the base of real clients."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.dropped = 0

    def incr(self, name: str, count: int = 1) -> None:
        """Count ``count`` occurrences."""

    def gauge(self, name: str, value: float) -> None:
        """Set a gauge."""

    def timing(self, name: str, ms: float) -> None:
        """Record a duration in milliseconds."""

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timing(name, (time.perf_counter() - t0) * 1000.0)


class StatsdMetrics(Metrics):
    """Metrics sent with the ``statsd`` client to ``statsd://host:port``."""

    def __init__(self, service: str, host: str, port: int) -> None:
        super().__init__(service)
        import statsd

        self.client = statsd.StatsClient(host, port, prefix=f"recengine.{service}")

    def _safe(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except Exception:  # metrics must never fail the caller
            self.dropped += 1

    def incr(self, name: str, count: int = 1) -> None:
        self._safe(self.client.incr, name, count)

    def gauge(self, name: str, value: float) -> None:
        self._safe(self.client.gauge, name, value)

    def timing(self, name: str, ms: float) -> None:
        self._safe(self.client.timing, name, ms)


def open_metrics(url: BackendURL, service: str) -> Metrics:
    if url.scheme == "statsd":
        return StatsdMetrics(service, url.host, url.port or 8125)
    return Metrics(service)
