"""The recommender API (Falcon WSGI app). Endpoints are documented in ``openapi.json``.

Run with ``gunicorn recengine.api.app:app`` (settings from ``RECENGINE_*``) or
``recengine api``.
"""

from __future__ import annotations

import hmac
import json
import time
from importlib import resources
from typing import Any

import falcon

from recengine.api.index_client import IndexClient, IndexUnavailable
from recengine.api.recommender import Recommender, Unavailable
from recengine.backends.registry import (
    open_artifact_store,
    open_cache,
    open_event_sink,
    open_metrics,
    open_user_store,
)
from recengine.config import Settings
from recengine.errors import RecEngineError
from recengine.events import Event, EventError, validate
from recengine.httputil import dumps, json_body, json_error_serializer, require_k, use_fast_json
from recengine.metrics import Metrics
from recengine.sources import EventSink
from recengine.wsgi import LazyApp

MAX_ID = 256


def _optional_id(req: falcon.Request, name: str) -> str | None:
    value = req.get_param(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_ID:
        raise falcon.HTTPBadRequest(title=f"Bad {name}",
                                    description=f"{name} is longer than {MAX_ID} characters")
    return value


class Recommend:
    def __init__(self, recommender: Recommender, metrics: Metrics) -> None:
        self.recommender = recommender
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        t0 = time.perf_counter()
        user_id = _optional_id(req, "user_id")
        item_id = _optional_id(req, "item_id")
        category = _optional_id(req, "category")
        k = require_k(req.get_param("k") or 10)
        try:
            answer = self.recommender.recommend(user_id, item_id, k, category)
        except Unavailable as exc:
            raise falcon.HTTPServiceUnavailable(title="Backends unavailable",
                                                description=str(exc)) from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(answer)
        self.metrics.timing("recommend_ms", (time.perf_counter() - t0) * 1000)


class Events:
    """``POST /events``: a JSON array of events, or ``{"events": [...]}``.

    Each event is validated on its own: valid ones are appended to the stream, invalid ones
    are listed with their index and reason. 202 when any was accepted, 400 when none was.
    """

    def __init__(self, sink: EventSink, settings: Settings, metrics: Metrics) -> None:
        self.sink = sink
        self.api_key = settings.events_api_key()
        self.max_batch = settings.api_max_batch
        self.max_bytes = settings.api_max_body_bytes
        self.metrics = metrics

    def _authorize(self, req: falcon.Request) -> None:
        if not self.api_key:
            return
        given = req.get_header("X-API-Key") or ""
        auth = req.get_header("Authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise falcon.HTTPUnauthorized(
                title="Unauthorized", description="POST /events needs a valid API key in "
                "X-API-Key or Authorization: Bearer", challenges=["Bearer"])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        t0 = time.perf_counter()
        self._authorize(req)
        body = json_body(req, self.max_bytes)
        records = body.get("events") if isinstance(body, dict) else body
        if not isinstance(records, list) or not records:
            raise falcon.HTTPBadRequest(
                title="Bad request",
                description="body must be a non-empty JSON array of events or {\"events\": [...]}")
        if len(records) > self.max_batch:
            raise falcon.HTTPContentTooLarge(
                title="Batch too large", description=f"at most {self.max_batch} events per call")
        good: list[Event] = []
        rejected: list[dict[str, Any]] = []
        for n, rec in enumerate(records):
            try:
                good.append(validate(rec))
            except EventError as exc:
                rejected.append({"index": n, "reason": str(exc)})
        try:
            self.sink.append(good)
        except (OSError, RecEngineError) as exc:
            raise falcon.HTTPServiceUnavailable(
                title="Event stream unavailable",
                description=f"no event was accepted: {exc}") from None
        self.metrics.incr("events_accepted", len(good))
        if rejected:
            self.metrics.incr("events_rejected", len(rejected))
        resp.media = {"accepted": len(good), "rejected": rejected}
        if good:
            resp.status = falcon.HTTP_202
        else:  # an error like any other (the Error schema), with the reasons per event
            resp.status = falcon.HTTP_400
            resp.media = {"title": "No valid events", "status": 400,
                          "description": f"all {len(records)} events were rejected",
                          **resp.media}
        self.metrics.timing("events_ms", (time.perf_counter() - t0) * 1000)


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Ready when the index service serves a version (else only popular items could be
    served, which is what a liveness-only API must not pretend to be)."""

    def __init__(self, index: IndexClient) -> None:
        self.index = index

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            v = self.index.version()
        except IndexUnavailable as exc:
            resp.status = falcon.HTTP_503
            resp.media = {"title": "Not ready", "status": 503,
                          "description": f"the index service cannot answer: {exc}",
                          "ready": False, "reason": str(exc)}
            return
        resp.media = {"ready": True, "version": v["version"]}


class OpenAPI:
    def __init__(self) -> None:
        self.doc = resources.files("recengine.api").joinpath("openapi.json").read_text()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self.doc


class TimedRequests:
    """Request latency and status counts per endpoint."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.t0 = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        t0 = getattr(req.context, "t0", None)
        if t0 is None:
            return
        endpoint = req.path.strip("/").replace("/", "_").replace(".", "_") or "root"
        if resource is None:
            endpoint = "unknown"
        status = str(resp.status)[:3] if resp.status else "200"
        self.metrics.timing(f"request.{endpoint}.{status}", (time.perf_counter() - t0) * 1000)
        self.metrics.incr(f"status.{status[0]}xx")


class ApiApp(falcon.App):
    """The Falcon app, with its :class:`Recommender` reachable as ``app.recommender``."""

    recommender: Recommender


def create_app(settings: Settings | None = None) -> ApiApp:
    settings = settings or Settings.load()
    metrics = open_metrics(settings.url("metrics"), "api")
    index = IndexClient(settings.index_url, settings.index_timeout_s)
    recommender = Recommender(
        users=open_user_store(settings.url("users"), settings.name),
        cache=open_cache(settings.url("cache"), settings.name),
        index=index,
        artifacts=open_artifact_store(settings.url("artifacts"), settings.name),
        metrics=metrics)
    app = ApiApp(middleware=[TimedRequests(metrics)])
    use_fast_json(app)
    app.set_error_serializer(json_error_serializer)
    app.add_route("/recommend", Recommend(recommender, metrics))
    app.add_route("/events", Events(open_event_sink(settings), settings, metrics))
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(index))
    app.add_route("/openapi.json", OpenAPI())
    app.recommender = recommender
    return app


#: What ``gunicorn recengine.<service>.app:app`` serves: built in the worker, from the
#: ``RECENGINE_*`` environment, on its first request.
app = LazyApp(create_app)


def openapi_document() -> dict:
    """The OpenAPI document as a dict (for tests and tooling)."""
    return json.loads(resources.files("recengine.api").joinpath("openapi.json").read_text())
