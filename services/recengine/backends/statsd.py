"""statsd metrics (``statsd://host:port``), sent with the ``statsd`` client.

See :mod:`recengine.metrics` for what sending must never do (block, fail, delay start-up).
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Self

from recengine.config import BackendURL
from recengine.metrics import HOLD_INTERVAL_S, RESOLVE_RETRY_S, Metrics


class StatsdMetrics(Metrics):
    """Metrics sent with the ``statsd`` client to ``statsd://host:port``."""

    def __init__(self, service: str, host: str, port: int, *,
                 hold_interval_s: float = HOLD_INTERVAL_S,
                 resolve_retry_s: float = RESOLVE_RETRY_S) -> None:
        super().__init__(service)
        self.host, self.port = host, port
        self.prefix = f"recengine.{service}"
        self.hold_interval_s = hold_interval_s
        self.resolve_retry_s = resolve_retry_s
        self.client: Any = None  # a statsd.StatsClient once the host is resolved
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beating = False
        if not self._connect(numeric_only=True):
            threading.Thread(target=self._resolve, name="statsd-resolve", daemon=True).start()

    @classmethod
    def from_url(cls, url: BackendURL, service: str) -> Self:
        return cls(service, url.host, url.port or 8125)

    def _connect(self, numeric_only: bool = False) -> bool:
        import statsd

        try:
            family, _, _, _, addr = socket.getaddrinfo(
                self.host, self.port, socket.AF_UNSPEC, socket.SOCK_DGRAM, 0,
                socket.AI_NUMERICHOST if numeric_only else 0)[0]
            client = statsd.StatsClient(addr[0], addr[1], prefix=self.prefix,
                                        ipv6=family == socket.AF_INET6)
        except (OSError, UnicodeError, IndexError):
            return False
        sock = getattr(client, "_sock", None)
        if sock is not None:
            sock.setblocking(False)  # a full buffer drops the packet (the client ignores it)
        self.client = client
        return True

    def _resolve(self) -> None:
        while not self._stop.is_set():
            if self._connect():
                return
            self._stop.wait(self.resolve_retry_s)

    def _safe(self, method: str, *args: Any) -> None:
        client = self.client
        if client is None:
            self.dropped += 1
            return
        try:
            getattr(client, method)(*args)
        except Exception:  # metrics must never fail the caller
            self.dropped += 1

    def incr(self, name: str, count: int = 1) -> None:
        self._safe("incr", name, count)

    def gauge(self, name: str, value: float) -> None:
        self._safe("gauge", name, value)

    def hold(self, name: str, value: float) -> None:
        with self._lock:
            self._held[name] = value
            start = not self._beating
            self._beating = True
        self.gauge(name, value)
        if start:
            threading.Thread(target=self._beat, name="statsd-hold", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.hold_interval_s):
            with self._lock:
                held = list(self._held.items())
            for name, value in held:
                self.gauge(name, value)

    def timing(self, name: str, ms: float) -> None:
        self._safe("timing", name, ms)

    def close(self) -> None:
        self._stop.set()
