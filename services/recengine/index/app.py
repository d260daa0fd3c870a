"""The index service: one embedding version, searched with faiss (Falcon WSGI app).

=========================  ===============================================================
``POST /search``           ``{"vector" | "vectors" | "vector_f32", "k", "exclude", "recent"}``
                           -> hits
``POST /similar``          ``{"item_ids", "k", "exclude"}`` -> hits (404 for unknown ids)
``GET /version``           the served version's number and manifest
``GET /healthz``           the process is alive
``GET /readyz``            200 only once the version is loaded and verified
``GET /openapi.json``      this service's OpenAPI document, ``index/openapi.json``
=========================  ===============================================================

Request bodies are checked against that document (:mod:`recengine.openapi`); what it cannot
say (the served version's dimension, finite float32 values) is checked here.

``vector_f32`` is one query vector as base64 of its little-endian float32 bytes: exact, and
cheaper to write and read than a list of decimal numbers (the recommender API sends this).

Run with ``gunicorn recengine.index.app:app`` (settings from ``RECENGINE_*``) or
``recengine index``. Each worker loads the version in a background thread after it starts,
so ``/healthz`` answers at once and ``/readyz`` turns 200 when the version is loaded.
"""

from __future__ import annotations

import base64
import logging
import re
import socket
import threading
import time

import faiss
import falcon
import numpy as np

from recengine.artifacts import ArtifactStore
from recengine.backends.registry import open_artifact_store, open_metrics
from recengine.config import Settings
from recengine.errors import RecEngineError
from recengine.httputil import NotReady, Ready, dumps, json_app
from recengine.index.searcher import Searcher, UnknownItems
from recengine.metrics import Metrics
from recengine.openapi import Document, Served
from recengine.versions import load_version
from recengine.wsgi import LazyApp

log = logging.getLogger("recengine.index")

#: This service's contract; request bodies are checked against it.
DOCUMENT = Document("recengine.index")
SEARCH_BODY = DOCUMENT.body("/search", "post")
SIMILAR_BODY = DOCUMENT.body("/similar", "post")


def pod_name() -> str:
    """This pod's name as one statsd path node: the hostname (a pod's name in Kubernetes),
    with characters statsd or Graphite would split on or drop replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "unknown"


#: How often an index pod renews its serving mark in the artifact store.
SERVING_MARK_RENEW_S = 300.0


class IndexState:
    """The loaded version (or why it is not loaded yet)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.searcher: Searcher | None = None
        self.error: str | None = None
        self.loading = False
        self._stop_marking = threading.Event()

    def load(self, wait: bool = True) -> bool:
        """Load the configured version; with ``wait``, poll until it exists and verifies."""
        self.loading = True
        t0 = time.perf_counter()
        try:
            store = open_artifact_store(self.settings.url("artifacts"), self.settings.name)
            while True:
                try:
                    version = load_version(store, self.settings.index_version)
                    break
                except RecEngineError as exc:
                    self.error = str(exc)
                    if not wait:
                        return False
                    log.warning("waiting for embedding version: %s", exc)
                    time.sleep(1.0)
            self.searcher = Searcher(version)
            self.error = None
            # Held: re-sent every few seconds, so a statsd that drops idle gauges keeps them.
            self.metrics.hold("version", version.number)
            self.metrics.hold(f"version_by_pod.{pod_name()}", version.number)
            self.metrics.hold("items", len(version.item_ids))
            self.metrics.timing("load_ms", (time.perf_counter() - t0) * 1000)
            log.info("serving embedding version %d (%d items)", version.number,
                     len(version.item_ids))
            self._mark_serving(store, version.number)
            return True
        finally:
            self.loading = False

    def _mark_serving(self, store: ArtifactStore, number: int) -> None:
        """Tell the trainer's pruning that this pod serves ``number``, now and every few
        minutes while it lives (a mark is honoured for SERVING_MARK_TTL_S)."""
        holder = socket.gethostname()

        def renew() -> None:
            while True:
                try:
                    store.mark_serving(holder, number)
                except (RecEngineError, OSError) as exc:
                    log.warning("could not mark version %d as served: %s", number, exc)
                if self._stop_marking.wait(SERVING_MARK_RENEW_S):
                    return

        self._stop_marking.set()  # a previous version's renewer stops
        self._stop_marking = threading.Event()
        threading.Thread(target=renew, name="serving-mark", daemon=True).start()

    def start(self) -> None:
        """Load now if the version is there; else keep polling for it in the background."""
        if not self.load(wait=False):
            threading.Thread(target=self.load, name="version-loader", daemon=True).start()

    def require(self) -> Searcher:
        if self.searcher is None:
            raise falcon.HTTPServiceUnavailable(
                title="Not ready", description=self.error or "embedding version is loading")
        return self.searcher

    def version(self) -> int:
        """The number of the version served (:class:`NotReady` while there is none)."""
        searcher = self.searcher
        if searcher is None:
            raise NotReady(self.error or "loading")
        return searcher.v.number


def _hits(hits: list) -> list[dict]:
    return [{"item_id": h.item_id, "score": h.score} for h in hits]


def _vectors(body: dict) -> np.ndarray:
    """The query vectors of a search body that matches ``SearchRequest``, as float32 rows."""
    if "vector_f32" in body:  # base64 of a multiple of 4 bytes, as the schema's pattern says
        data = base64.b64decode(body["vector_f32"], validate=True)
        return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(1, -1)
    rows = body["vectors"] if "vectors" in body else [body["vector"]]
    if len({len(row) for row in rows}) > 1:
        raise falcon.HTTPBadRequest(title="Bad dimension",
                                    description="the vectors have different lengths")
    try:
        with np.errstate(over="ignore"):  # beyond float32: infinite, refused by the caller
            return np.asarray(rows, dtype=np.float32)
    except OverflowError:  # an integer beyond float64
        raise falcon.HTTPBadRequest(title="Bad vector",
                                    description="vectors must be finite float32 values") from None


class Search:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        searcher = self.state.require()
        body = SEARCH_BODY.read(req)
        k, exclude, recent = int(body["k"]), body["exclude"], body["recent"]
        vectors = _vectors(body)
        dim = searcher.v.dim
        if vectors.shape[1] != dim:
            raise falcon.HTTPBadRequest(
                title="Bad dimension",
                description=f"vectors must have {dim} numbers each, got shape "
                            f"{list(vectors.shape)}")
        if not np.isfinite(vectors).all():  # beyond float32's range, or NaN / inf bytes
            raise falcon.HTTPBadRequest(title="Bad vector",
                                        description="vectors must be finite float32 values")
        results = [searcher.hit_dicts(*searcher.search_rows(v, k, exclude, recent))
                   for v in vectors]
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"version": searcher.v.number, "results": results})


class Similar:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        searcher = self.state.require()
        body = SIMILAR_BODY.read(req)
        try:
            hits = searcher.similar(body["item_ids"], int(body["k"]), body["exclude"])
        except UnknownItems as exc:
            raise falcon.HTTPNotFound(
                title="Unknown items",
                description=f"not in embedding version {searcher.v.number}: {exc}") from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"version": searcher.v.number, "results": _hits(hits)})


class Version:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        v = self.state.require().v
        resp.media = {"version": v.number, "items": len(v.item_ids), "dim": v.dim,
                      "index_type": v.manifest.get("index_type"), "manifest": v.manifest}


class IndexApp(falcon.App):
    """The Falcon app, with its :class:`IndexState` reachable as ``app.state``."""

    state: IndexState


def create_app(settings: Settings | None = None, *, load: bool = True,
               state: IndexState | None = None) -> IndexApp:
    """The WSGI app; ``load`` starts loading the configured version in the background."""
    settings = settings or Settings.load()
    faiss.omp_set_num_threads(settings.index_threads)
    state = state or IndexState(settings, open_metrics(settings.url("metrics"), "index"))
    app = json_app(IndexApp(), state.metrics)
    app.add_route("/search", Search(state))
    app.add_route("/similar", Similar(state))
    app.add_route("/version", Version(state))
    app.add_route("/readyz", Ready(state.version, "the embedding version is not loaded"))
    app.add_route("/openapi.json", Served(DOCUMENT))
    app.state = state
    if load:
        state.start()
    return app


#: What ``gunicorn recengine.<service>.app:app`` serves: built in the worker, from the
#: ``RECENGINE_*`` environment, on its first request.
app = LazyApp(create_app)
