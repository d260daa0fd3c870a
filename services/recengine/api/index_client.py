"""A small keep-alive JSON client for the index service, one connection per thread."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class IndexUnavailable(Exception):
    """The index service could not answer (down, timed out, not ready, or an error)."""


class IndexNotFound(Exception):
    """The index service answered 404 (e.g. unknown item ids)."""


class IndexClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):  # one retry on a stale keep-alive connection
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 1 or isinstance(exc, TimeoutError):
                    raise IndexUnavailable(f"index service: {exc}") from None
        if resp.status == 404:
            raise IndexNotFound(json.loads(payload).get("description", "not found"))
        if resp.status >= 300:
            raise IndexUnavailable(f"index service answered {resp.status}: {payload[:200]!r}")
        return json.loads(payload)

    def search(self, vector: list[float], k: int, exclude: list[str],
               recent: list[str]) -> dict:
        return self.request("POST", "/search", {"vector": vector, "k": k, "exclude": exclude,
                                                "recent": recent})

    def similar(self, item_ids: list[str], k: int, exclude: list[str]) -> dict:
        return self.request("POST", "/similar", {"item_ids": item_ids, "k": k,
                                                 "exclude": exclude})

    def version(self) -> dict:
        return self.request("GET", "/version")
