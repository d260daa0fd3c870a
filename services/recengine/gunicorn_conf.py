"""gunicorn hooks for the recengine apps (``gunicorn -c python:recengine.gunicorn_conf``),
and :class:`InlineWorker`, the worker class both services run with one thread per worker.

Each worker builds its app before it accepts a connection, so every worker of an index pod
has its embedding version loaded (or is polling for the first one) before it can answer; a
readiness probe answered by one worker then speaks for all of them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections import deque
from concurrent import futures
from typing import Any

from gunicorn.workers import gthread

from recengine.wsgi import LazyApp


def post_worker_init(worker: Any) -> None:
    app = worker.wsgi
    if isinstance(app, LazyApp):
        app.get()


class InlineWorker(gthread.ThreadWorker):
    """gthread's event loop, keep-alive, timeouts and graceful shutdown, with each request
    handled on the loop's own thread instead of being handed to a thread pool.

    Select with ``--worker-class recengine.gunicorn_conf.InlineWorker`` (``serve.py`` does when
    a service runs one thread per worker). Why: our handlers are CPU-bound Python holding the
    GIL, so a pool thread runs no faster than the loop thread would; but each gthread request
    crosses threads twice (loop -> pool -> loop), and on a busy machine every crossing is a
    GIL hand-over and a context switch. Measured at 100k items on 2 cores with 2 closed-loop
    clients: p50 1.1 ms / 1,630 requests/s inline against 1.6-2.3 ms / 750-970 with gthread.

    Like gunicorn's sync worker, a worker serves one request at a time: a client that sends
    half a request holds its worker until the request completes or ``--timeout`` restarts
    the worker, so put a buffering proxy (an ingress) in front of a public service. Idle
    keep-alive connections and new connections without data yet wait in the poller, as with
    gthread, and do not hold the worker. HTTP/2 is not supported (gunicorn's default).
    """

    #: A worker holding n connections leaves a new one to the other workers for
    #: ``min(n, 3) * ACCEPT_HOLD_S`` before it takes it (see :meth:`accept`).
    ACCEPT_HOLD_S = 0.002

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready: deque = deque()
        self._serving = False
        self._hold_until: float | None = None

    # --- accepting: least connections first ---------------------------------------------------
    # All workers poll the one listening socket, and whichever runs first accepts; when two
    # keep-alive connections arrive together (two API workers' first requests), the worker
    # that wakes first takes both and the other idles, for as long as the connections live.
    # Measured: both API->index connections on one index worker in 3 runs of 3. So a worker
    # that already holds connections lets the listener be for a moment, and a worker with
    # fewer (idle ones at once) takes the connection; if none does, the holder takes it.
    # Measured with it: one connection per worker in 6 runs of 6. The price is paid once per
    # connection, only where every worker holds some: up to 6 ms before its first request.

    def accept(self, listener: Any) -> None:
        if self.nr_conns and self._hold_until is None:
            self._hold_until = time.monotonic() + self.ACCEPT_HOLD_S * min(self.nr_conns, 3)
            super().set_accept_enabled(False)
            return
        self._hold_until = None
        super().accept(listener)

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled and self._hold_until is not None and time.monotonic() < self._hold_until:
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        hold = self._hold_until
        if hold is not None:
            timeout = max(0.0, min(timeout, hold - time.monotonic()))
        was_accepting = self._accepting
        super().wait_for_and_dispatch_events(timeout)
        if hold is not None and was_accepting and self._hold_until == hold:
            # polled the listener after the hold without a connection to take: another
            # worker took it, so the next one starts with a fresh hold
            self._hold_until = None

    # --- serving --------------------------------------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        if not conn.initialized and not conn.data_ready:
            # A new connection: let the poller wait for its first bytes (gthread's "defer").
            deferred: futures.Future = futures.Future()
            deferred.set_result(gthread._DEFER)
            self.finish_request(conn, deferred)
            return
        self._ready.append(conn)
        if self._serving:  # called back from finish_request (a pipelined request): queue it
            return
        self._serving = True
        try:
            while self._ready:
                ready = self._ready.popleft()
                done: futures.Future = futures.Future()
                try:
                    done.set_result(self.handle(ready))
                except Exception as exc:
                    done.set_exception(exc)
                self.finish_request(ready, done)
        finally:
            self._serving = False

    def handle_request(self, req: Any, conn: Any) -> bool:
        # gunicorn writes the status line and headers, then the body: two TCP segments, and
        # a client that wakes for the first sleeps again for the second. Corked, they leave as
        # one (measured: the API's context switches per request fell from 2.2 to 1.6).
        cork = _CORK and conn.sock.family in (socket.AF_INET, socket.AF_INET6)
        if cork:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        try:
            return super().handle_request(req, conn)
        finally:
            if cork:
                with contextlib.suppress(OSError):  # the peer may be gone
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


_CORK = hasattr(socket, "TCP_CORK")  # Linux
