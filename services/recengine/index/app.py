"""The index service: one embedding version, searched with faiss (Falcon WSGI app).

=========================  ===============================================================
``POST /search``           ``{"vector" | "vectors" | "vector_f32", "k", "exclude", "recent"}``
                           -> hits
``POST /similar``          ``{"item_ids", "k", "exclude"}`` -> hits (404 for unknown ids)
``GET /version``           the served version's number and manifest
``GET /healthz``           the process is alive
``GET /readyz``            200 only once the version is loaded and verified
=========================  ===============================================================

``vector_f32`` is one query vector as base64 of its little-endian float32 bytes: exact, and
cheaper to write and read than a list of decimal numbers (the recommender API sends this).

Run with ``gunicorn recengine.index.app:app`` (settings from ``RECENGINE_*``) or
``recengine index``. Each worker loads the version in a background thread after it starts,
so ``/healthz`` answers at once and ``/readyz`` turns 200 when the version is loaded.
"""

from __future__ import annotations

import base64
import binascii
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
from recengine.httputil import (
    dumps,
    json_error_serializer,
    json_object,
    require_k,
    str_list,
    use_fast_json,
)
from recengine.index.searcher import Searcher, UnknownItems
from recengine.metrics import Metrics
from recengine.versions import load_version
from recengine.wsgi import LazyApp

log = logging.getLogger("recengine.index")
MAX_BATCH = 256


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


def _hits(hits: list) -> list[dict]:
    return [{"item_id": h.item_id, "score": h.score} for h in hits]


def _vectors(body: dict) -> np.ndarray:
    """The query vectors of a search body, as a float32 array (400 when malformed)."""
    if "vector_f32" in body:
        raw = body["vector_f32"]
        try:
            if not isinstance(raw, str):
                raise ValueError
            data = base64.b64decode(raw, validate=True)
            if len(data) % 4:
                raise ValueError
        except (ValueError, binascii.Error):
            raise falcon.HTTPBadRequest(
                title="Bad vector",
                description="vector_f32 must be base64 of little-endian float32 values") from None
        return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(1, -1)
    if "vectors" in body:
        raw = body["vectors"]
    elif "vector" in body:
        raw = [body["vector"]]
    else:
        raise falcon.HTTPBadRequest(title="Bad request",
                                    description="give 'vector', 'vectors' or 'vector_f32'")
    try:
        return np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        raise falcon.HTTPBadRequest(title="Bad vector",
                                    description="vectors must be lists of numbers") from None


class Search:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        t0 = time.perf_counter()
        searcher = self.state.require()
        body = json_object(req)
        k = require_k(body.get("k", 10))
        exclude = str_list(body, "exclude")
        recent = str_list(body, "recent")
        vectors = _vectors(body)
        dim = searcher.v.dim
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise falcon.HTTPBadRequest(
                title="Bad dimension",
                description=f"vectors must have {dim} numbers each, got shape "
                            f"{list(vectors.shape)}")
        if len(vectors) > MAX_BATCH:
            raise falcon.HTTPBadRequest(title="Batch too large",
                                        description=f"at most {MAX_BATCH} vectors per call")
        if not np.isfinite(vectors).all():
            raise falcon.HTTPBadRequest(title="Bad vector", description="vectors must be finite")
        results = [searcher.hit_dicts(*searcher.search_rows(v, k, exclude, recent))
                   for v in vectors]
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"version": searcher.v.number, "results": results})
        self.state.metrics.timing("search_ms", (time.perf_counter() - t0) * 1000)


class Similar:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        t0 = time.perf_counter()
        searcher = self.state.require()
        body = json_object(req)
        k = require_k(body.get("k", 10))
        item_ids = str_list(body, "item_ids")
        if not item_ids:
            raise falcon.HTTPBadRequest(title="Bad request",
                                        description="item_ids must be a non-empty list")
        try:
            hits = searcher.similar(item_ids, k, str_list(body, "exclude"))
        except UnknownItems as exc:
            raise falcon.HTTPNotFound(
                title="Unknown items",
                description=f"not in embedding version {searcher.v.number}: {exc}") from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"version": searcher.v.number, "results": _hits(hits)})
        self.state.metrics.timing("similar_ms", (time.perf_counter() - t0) * 1000)


class Version:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        v = self.state.require().v
        resp.media = {"version": v.number, "items": len(v.item_ids), "dim": v.dim,
                      "index_type": v.manifest.get("index_type"), "manifest": v.manifest}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    def __init__(self, state: IndexState) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        s = self.state.searcher
        if s is None:
            resp.status = falcon.HTTP_503
            resp.media = {"ready": False, "reason": self.state.error or "loading"}
        else:
            resp.media = {"ready": True, "version": s.v.number}


class IndexApp(falcon.App):
    """The Falcon app, with its :class:`IndexState` reachable as ``app.state``."""

    state: IndexState


def create_app(settings: Settings | None = None, *, load: bool = True,
               state: IndexState | None = None) -> IndexApp:
    """The WSGI app; ``load`` starts loading the configured version in the background."""
    settings = settings or Settings.load()
    faiss.omp_set_num_threads(settings.index_threads)
    state = state or IndexState(settings, open_metrics(settings.url("metrics"), "index"))
    app = IndexApp()
    use_fast_json(app)
    app.set_error_serializer(json_error_serializer)
    app.add_route("/search", Search(state))
    app.add_route("/similar", Similar(state))
    app.add_route("/version", Version(state))
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(state))
    app.state = state
    if load:
        state.start()
    return app


#: What ``gunicorn recengine.<service>.app:app`` serves: built in the worker, from the
#: ``RECENGINE_*`` environment, on its first request.
app = LazyApp(create_app)
