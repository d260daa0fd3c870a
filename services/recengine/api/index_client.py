"""A small keep-alive JSON client for the index service, one connection per thread.

It speaks plain HTTP/1.1 over TCP (or TLS for ``https://``) on a raw socket: one ``sendall``
per request and a minimal response reader (status line, ``Content-Length`` or chunked body,
``Connection: close``). ``http.client`` parses every response's headers with the ``email``
package and sends headers and body in separate calls, which cost more than the index's own
work per request; the index service answers small JSON bodies, so this is all it needs.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from recengine.httputil import dumps, loads

MAX_HEAD = 65_536
MAX_BODY = 64 * 1024 * 1024


class IndexUnavailable(Exception):
    """The index service could not answer (down, timed out, not ready, or an error)."""


class IndexNotFound(Exception):
    """The index service answered 404 (e.g. unknown item ids)."""


class _ProtocolError(OSError):
    """The peer's answer is not HTTP/1.x we can read (or it closed the connection early)."""


class _Conn:
    """One keep-alive connection and its read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.opened = time.monotonic()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65_536)
        if not data:
            raise _ProtocolError("connection closed by the index service")
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise _ProtocolError("response line too long")
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def exchange(self, request: bytes, head_only: bool) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, whether the connection stays open)."""
        self.buf.clear()
        self.sock.sendall(request)
        while True:  # skip interim 1xx answers
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                if len(self.buf) > MAX_HEAD:
                    raise _ProtocolError("response head too large")
                self._fill()
            head = bytes(self.buf[:end]).split(b"\r\n")
            del self.buf[:end + 4]
            parts = head[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise _ProtocolError(f"bad status line {head[0][:100]!r}")
            status = int(parts[1])
            if status >= 200:
                break
        keep = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _ProtocolError("bad Content-Length") from None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.strip().lower()
                keep = value == b"keep-alive" if not keep else value != b"close"
        if head_only or status in (204, 304):
            return status, b"", keep
        if chunked:
            body = bytearray()
            while True:
                size = int(self._line().split(b";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    break
                if len(body) + size > MAX_BODY:
                    raise _ProtocolError("response body too large")
                body += self._take(size)
                self._line()
            return status, bytes(body), keep
        if length is not None:
            if length > MAX_BODY:
                raise _ProtocolError("response body too large")
            return status, self._take(length), keep
        while True:  # no length: the body runs to the end of the connection
            data = self.sock.recv(65_536)
            if not data:
                return status, bytes(self.buf), False
            self.buf += data
            if len(self.buf) > MAX_BODY:
                raise _ProtocolError("response body too large")


class IndexClient:
    """Keep-alive connections to the index service, each reopened after ``max_age_s``.

    Reopening rebalances: a kept-alive connection stays with the worker (and, behind a
    Kubernetes Service, the pod) that accepted it, and connections opened together, or while
    some index workers were still loading their version, pile up on the ones that answered
    first. A fresh connection goes to a worker with fewer (see ``gunicorn_conf.InlineWorker``),
    and to new pods after a rollout. Once every few seconds per thread costs nothing measurable.
    """

    def __init__(self, base_url: str, timeout_s: float, max_age_s: float = 2.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if self.https else 80)
        self._host_header = (host if default_port else f"{host}:{self.port}").encode()
        self._ssl = ssl.create_default_context() if self.https else None
        self._local = threading.local()

    def _connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        head = b"%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (
            method.encode(), self.prefix.encode(), path.encode(), self._host_header)
        if body is not None:
            data = dumps(body)
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
            message = head + b"\r\n" + data
        else:
            message = head + b"\r\n"
        for attempt in range(2):  # one retry, on a fresh connection (a stale keep-alive one)
            conn = getattr(self._local, "conn", None)
            if conn is not None and time.monotonic() - conn.opened > self.max_age_s:
                self._drop()
                conn = None
            try:
                if conn is None:
                    conn = self._local.conn = self._connect()
                status, payload, keep = conn.exchange(message, method == "HEAD")
                break
            except (OSError, ValueError) as exc:
                self._drop()
                if attempt == 1 or isinstance(exc, TimeoutError):
                    raise IndexUnavailable(f"index service: {exc}") from None
        if not keep:
            self._drop()
        if status == 404:
            try:
                description = loads(payload).get("description", "not found")
            except (ValueError, AttributeError):
                description = "not found"
            raise IndexNotFound(description)
        if status >= 300:
            raise IndexUnavailable(f"index service answered {status}: {payload[:200]!r}")
        try:
            return loads(payload)
        except ValueError as exc:
            raise IndexUnavailable(f"index service answered invalid JSON: {exc}") from None

    def search(self, vector: np.ndarray | list[float], k: int, exclude: list[str],
               recent: list[str]) -> dict:
        """Top-k for one query vector; sent as base64 float32 (exact and compact)."""
        raw = np.ascontiguousarray(vector, dtype="<f4").tobytes()
        return self.request("POST", "/search", {"vector_f32": base64.b64encode(raw).decode(),
                                                "k": k, "exclude": exclude, "recent": recent})

    def similar(self, item_ids: list[str], k: int, exclude: list[str]) -> dict:
        return self.request("POST", "/similar", {"item_ids": item_ids, "k": k,
                                                 "exclude": exclude})

    def version(self) -> dict:
        return self.request("GET", "/version")
