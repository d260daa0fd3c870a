"""Shared HTTP plumbing of the Falcon apps: JSON bodies with limits, JSON errors, health and
readiness, request timing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import falcon
import falcon.media
import orjson

from recengine.metrics import Metrics

AppT = TypeVar("AppT", bound=falcon.App)


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def loads(raw: bytes | str, *, allow_nan: bool = True) -> Any:
    """Parse JSON: orjson for speed, the standard library's reading (NaN, huge integers,
    UTF-16 bodies) whenever orjson refuses, so both give the same answers and errors.
    ``allow_nan=False`` refuses ``NaN`` and ``Infinity``, which are not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw) if allow_nan else json.loads(raw, parse_constant=_not_a_number)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes: orjson, or the standard library for what orjson will not write
    (integers beyond 64 bits, non-string keys)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


#: ``resp.media`` and ``req.media`` of the apps go through :func:`dumps` / :func:`loads`.
JSON_HANDLER = falcon.media.JSONHandler(dumps=dumps, loads=loads)


def use_fast_json(app: falcon.App) -> None:
    """Serialize and parse JSON media of ``app`` with :data:`JSON_HANDLER`."""
    app.req_options.media_handlers[falcon.MEDIA_JSON] = JSON_HANDLER
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSON_HANDLER


def json_error_serializer(req: falcon.Request, resp: falcon.Response,
                          exc: falcon.HTTPError) -> None:
    """Every error is JSON: ``{"title", "description", "status"}``."""
    resp.content_type = falcon.MEDIA_JSON
    doc: dict[str, Any] = {"title": exc.title, "status": int(exc.status_code)}
    if exc.description:
        doc["description"] = exc.description
    resp.text = json.dumps(doc)


def json_body(req: falcon.Request, max_bytes: int = 1_048_576) -> Any:
    """The request's JSON body (413 when too large, 400 when not JSON, NaN included)."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"at most {max_bytes} bytes")
    raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(
            title="Body too large", description=f"at most {max_bytes} bytes")
    if not raw:
        raise falcon.HTTPBadRequest(title="Bad request", description="empty body, JSON expected")
    try:  # a request body is JSON, which has no NaN: the OpenAPI documents could not say it
        return loads(raw, allow_nan=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise falcon.HTTPBadRequest(title="Invalid JSON", description=str(exc)[:200]) from None
    except RecursionError:  # "[" nested thousands deep: the client's fault, not a 500
        raise falcon.HTTPBadRequest(title="Invalid JSON",
                                    description="nested too deep to decode") from None


class Health:
    """``GET /healthz``: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class NotReady(Exception):
    """Why a service is not ready (the ``reason`` of its 503)."""


class Ready:
    """``GET /readyz``: ``{"ready": true, "version": n}`` once ``probe`` returns the embedding
    version served; a 503 when it raises :class:`NotReady`, an error like any other with
    ``ready: false`` and the reason (``what`` says, in the description, what is not ready)."""

    def __init__(self, probe: Callable[[], int], what: str) -> None:
        self.probe = probe
        self.what = what

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            version = self.probe()
        except NotReady as exc:
            resp.status = falcon.HTTP_503
            resp.media = {"title": "Not ready", "status": 503,
                          "description": f"{self.what}: {exc}", "ready": False,
                          "reason": str(exc)}
            return
        resp.media = {"ready": True, "version": version}


class TimedRequests:
    """Middleware: every request's latency as ``request.<endpoint>.<status>`` and a count per
    status class, where the endpoint is the route (``/openapi.json`` -> ``openapi_json``) or
    ``unknown`` for a path no route matched (so scanners cannot mint new metric names)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.t0 = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        t0 = getattr(req.context, "t0", None)
        if t0 is None:
            return
        if resource is None or req.uri_template is None:
            endpoint = "unknown"
        else:
            endpoint = req.uri_template.strip("/").replace("/", "_").replace(".", "_") or "root"
        status = str(resp.status)[:3] if resp.status else "200"
        self.metrics.timing(f"request.{endpoint}.{status}", (time.perf_counter() - t0) * 1000)
        self.metrics.incr(f"status.{status[0]}xx")


def json_app(app: AppT, metrics: Metrics) -> AppT:
    """``app`` as both services are set up: JSON media through :data:`JSON_HANDLER`, every
    error as JSON, each request timed, ``/healthz``."""
    use_fast_json(app)
    app.set_error_serializer(json_error_serializer)
    app.add_middleware(TimedRequests(metrics))
    app.add_route("/healthz", Health())
    return app
