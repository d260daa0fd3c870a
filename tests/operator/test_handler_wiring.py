"""The reconcile handler's I/O wiring, against a stand-in API server on 127.0.0.1.

Not a cluster: a few canned endpoints that record what the operator sends, to check the calls
the pure tests cannot see — paths, the status subresource, the strategic-merge content type,
base64 Secrets, a 404 read as "gone" — with a real file artifact store.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from support.kube_objects import T0, deployment, manifest

from recengine.backends.files import FileArtifactStore
from recengine_operator.config import Config
from recengine_operator.handlers.handle_recengine import reconcile
from recengine_operator.handlers.runtime import Runtime
from recengine_operator.kube import Kube

RECENGINES = "/apis/recengine.io/v1alpha1/namespaces/recs/recengines"
DEPLOYMENTS = "/apis/apps/v1/namespaces/recs/deployments"
SECRETS = "/api/v1/namespaces/recs/secrets"


class FakeAPI(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.refuse: dict[tuple[str, str], tuple[int, str]] = {}


class _Handler(BaseHTTPRequestHandler):
    server: FakeAPI

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, code: int, message: str) -> None:
        self._send(code, {"kind": "Status", "status": "Failure", "code": code,
                          "message": message})

    def _not_found(self) -> None:
        self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound",
                         "message": f"{self.path} not found", "code": 404})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if ("GET", path) in self.server.refuse:
            return self._refuse(*self.server.refuse["GET", path])
        obj = self.server.objects.get(path)
        self._send(200, obj) if obj is not None else self._not_found()

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        path = self.path.split("?")[0]
        self.server.patches.append((path, self.headers["Content-Type"], body))
        if ("PATCH", path) in self.server.refuse:
            return self._refuse(*self.server.refuse["PATCH", path])
        target = self.server.objects.get(path.removesuffix("/status"))
        self._send(200, target) if target is not None else self._not_found()


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def runtime_for(api: FakeAPI, events: list) -> Runtime:
    conf = client.Configuration(host=f"http://127.0.0.1:{api.server_address[1]}")
    kube = Kube(client.ApiClient(conf), timeout_s=5)
    return Runtime(config=Config(), kube=kube, post_event=lambda obj, e: events.append(e))


def recengine(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "recengine.io/v1alpha1", "kind": "RecEngine",
            "metadata": {"name": "movies", "namespace": "recs", "generation": 3, "uid": "u1"},
            "spec": spec or {"artifacts": {"secretRef": "movies-backends"},
                             "index": {"deployment": "movies-index"},
                             "embedding": {"policy": "Latest"}}}


def serve_two_versions(api: FakeAPI, tmp_path) -> None:
    store = FileArtifactStore(tmp_path)
    for recall in (0.2, 0.3):
        m = manifest(0, recall)
        del m["version"]
        store.publish({"item_ids.json": b"[]"}, m)
    url = base64.b64encode(f"file://{tmp_path}".encode()).decode()
    api.objects[f"{RECENGINES}/movies"] = recengine()
    api.objects[f"{DEPLOYMENTS}/movies-index"] = deployment(None)
    api.objects[f"{SECRETS}/movies-backends"] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "movies-backends"},
        "data": {"RECENGINE_ARTIFACTS_URL": url}}


def test_reconcile_patches_the_deployment_and_the_status_subresource(api, tmp_path):
    serve_two_versions(api, tmp_path)
    events: list = []
    reconcile(runtime_for(api, events), "recs", "movies", logging.getLogger("t"), now=T0)

    (dep_path, dep_type, dep_patch), (st_path, st_type, st_patch) = api.patches
    assert dep_path == f"{DEPLOYMENTS}/movies-index"
    assert dep_type == "application/strategic-merge-patch+json"
    annotations = dep_patch["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"recengine.io/embedding-version": "2"}
    assert st_path == f"{RECENGINES}/movies/status"
    assert st_type == "application/merge-patch+json"
    status = st_patch["status"]
    assert status["targetVersion"] == 2 and status["phase"] == "Progressing"
    assert status["observedGeneration"] == 3
    assert [e.reason for e in events] == ["RollingOut"]


def test_a_missing_secret_is_reported_in_the_status(api):
    api.objects[f"{RECENGINES}/movies"] = recengine()
    api.objects[f"{DEPLOYMENTS}/movies-index"] = deployment(None)
    events: list = []
    reconcile(runtime_for(api, events), "recs", "movies", logging.getLogger("t"), now=T0)
    ((_, _, body),) = api.patches
    degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "ArtifactsUnavailable"
    assert "Secret movies-backends does not exist" in degraded["message"]


def test_a_deleted_recengine_is_left_alone(api):
    reconcile(runtime_for(api, []), "recs", "movies", logging.getLogger("t"), now=T0)
    assert api.patches == []


def test_a_refused_deployment_patch_is_reported_not_recorded_as_a_rollout(api, tmp_path):
    serve_two_versions(api, tmp_path)
    api.refuse["PATCH", f"{DEPLOYMENTS}/movies-index"] = (422, "spec.template: Invalid value")
    events: list = []
    reconcile(runtime_for(api, events), "recs", "movies", logging.getLogger("t"), now=T0)
    status = api.patches[-1][2]["status"]
    assert "rolloutStartedAt" not in status and status["phase"] == "Degraded"
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "DeploymentPatchFailed"
    assert "422 spec.template: Invalid value" in degraded["message"]
    assert [e.reason for e in events] == ["DeploymentPatchFailed"]


def test_an_unreadable_deployment_is_reported(api):
    api.objects[f"{RECENGINES}/movies"] = recengine()
    api.refuse["GET", f"{DEPLOYMENTS}/movies-index"] = (403, "deployments is forbidden")
    events: list = []
    reconcile(runtime_for(api, events), "recs", "movies", logging.getLogger("t"), now=T0)
    ((_, _, body),) = api.patches
    degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "DeploymentUnreadable"
    assert "403 deployments is forbidden" in degraded["message"]
