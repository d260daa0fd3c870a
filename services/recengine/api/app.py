"""The recommender API (Falcon WSGI app). Endpoints are documented in ``openapi.json``.

Run with ``gunicorn recengine.api.app:app`` (settings from ``RECENGINE_*``) or
``recengine api``.
"""

from __future__ import annotations

import hmac
import json
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
from recengine.events import Event, EventError, Limits, validate
from recengine.httputil import NotReady, Ready, dumps, json_app, json_body
from recengine.metrics import Metrics
from recengine.openapi import Document, Served
from recengine.sources import EventSink
from recengine.wsgi import LazyApp

#: This API's contract; query parameters and request bodies are checked against it.
DOCUMENT = Document("recengine.api")
RECOMMEND_QUERY = DOCUMENT.query("/recommend", "get")
EVENTS_BODY = DOCUMENT.body("/events", "post")


class Recommend:
    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = RECOMMEND_QUERY.read(req)
        try:
            answer = self.recommender.recommend(q["user_id"], q["item_id"], q["k"],
                                                q["category"])
        except Unavailable as exc:
            raise falcon.HTTPServiceUnavailable(title="Backends unavailable",
                                                description=str(exc)) from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(answer)


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
        self.limits = Limits.of(settings)
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
        self._authorize(req)
        body = json_body(req, self.max_bytes)
        records = body.get("events") if isinstance(body, dict) else body
        error = EVENTS_BODY.error(body)
        if error is not None and not (isinstance(records, list) and records):
            # a non-empty list fails the schema only when none of its records is an Event:
            # that is answered below, with each record's reason
            raise error
        if len(records) > self.max_batch:
            raise falcon.HTTPContentTooLarge(
                title="Batch too large", description=f"at most {self.max_batch} events per call")
        good: list[Event] = []
        rejected: list[dict[str, Any]] = []
        for n, rec in enumerate(records):
            try:
                event = validate(rec, self.limits)
                # The line the trainer will read must pass its size limit too.
                size = len(event.to_json().encode())
                if size > self.limits.max_bytes:
                    raise EventError(f"event of {size} bytes as JSON is larger than "
                                     f"{self.limits.max_bytes}")
            except EventError as exc:
                rejected.append({"index": n, "reason": str(exc)})
                continue
            good.append(event)
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


def _index_version(index: IndexClient) -> int:
    """The version the index service serves (the API is ready when it can search)."""
    try:
        return int(index.version()["version"])
    except IndexUnavailable as exc:
        raise NotReady(str(exc)) from None


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
    app = json_app(ApiApp(), metrics)
    app.add_route("/recommend", Recommend(recommender))
    app.add_route("/events", Events(open_event_sink(settings), settings, metrics))
    app.add_route("/readyz", Ready(lambda: _index_version(index),
                                   "the index service cannot answer"))
    app.add_route("/openapi.json", Served(DOCUMENT))
    app.recommender = recommender
    return app


#: What ``gunicorn recengine.<service>.app:app`` serves: built in the worker, from the
#: ``RECENGINE_*`` environment, on its first request.
app = LazyApp(create_app)


def openapi_document() -> dict:
    """The OpenAPI document as a dict (for tests and tooling)."""
    return json.loads(DOCUMENT.text)
