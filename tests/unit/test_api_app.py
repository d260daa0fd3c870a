"""The recommender API (in process) against a real index service on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import falcon
import falcon.inspect
import falcon.testing
import numpy as np
import pytest
from support.net import free_port
from support.planted_catalog import Catalog, item_meta, publish_catalog, settings_for

from recengine.api.app import create_app, openapi_document
from recengine.events import parse_json
from recengine.index.app import create_app as create_index_app
from recengine.stores import UserRecord

T0 = 1_700_000_000.0
#: alice's folded user vector [p_u * w, 1]
ALICE = np.array([0.3, -0.2, 0.5, 0.1, 1.0], dtype=np.float32)
#: alice's recent items, newest first: i10 (neighbours i11 0.9, i12 0.5) and i5 (most popular)
ALICE_RECENT = [("i10", T0), ("i5", T0 - 60)]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@pytest.fixture(scope="module")
def index_url(catalog: Catalog) -> Iterator[str]:
    """A real index service with the catalogue's version loaded, served by wsgiref."""
    app = create_index_app(settings_for(catalog.data_dir), load=False)
    app.state.load()  # type: ignore[attr-defined]
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="index", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data dir per test (events file, users, artifacts) with the same version."""
    publish_catalog(tmp_path)
    return tmp_path


def _api(data_dir: Path, index_url: str, **overrides: object) -> falcon.testing.TestClient:
    app = create_app(settings_for(data_dir, index_url=index_url, **overrides))
    app.recommender.users.upsert(  # type: ignore[attr-defined]
        [UserRecord("alice", ALICE, events=12, recent=ALICE_RECENT, updated=T0)])
    return falcon.testing.TestClient(app)


@pytest.fixture
def client(data_dir: Path, index_url: str) -> falcon.testing.TestClient:
    return _api(data_dir, index_url)


@pytest.fixture
def down_client(data_dir: Path) -> falcon.testing.TestClient:
    """The API with its index service down (nothing listens on the port)."""
    return _api(data_dir, f"http://127.0.0.1:{free_port()}", index_timeout_s=0.2)


def assert_error(resp: falcon.testing.Result, status: int) -> dict:
    """Every error is JSON in the shape of the OpenAPI Error schema."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json
    assert doc["status"] == status
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc.get("description", ""), str)
    return doc


def _ids(doc: dict) -> list[str]:
    return [x["item_id"] for x in doc["items"]]


# --- GET /recommend --------------------------------------------------------------------------
def test_known_user_gets_recommendations_based_on_user(client: falcon.testing.TestClient,
                                                       catalog: Catalog) -> None:
    resp = client.simulate_get("/recommend", params={"user_id": "alice", "k": 5})
    assert resp.status_code == 200
    doc = resp.json
    assert doc["based_on"] == "user"
    assert doc["version"] == catalog.version
    assert (doc["user_id"], doc["item_id"]) == ("alice", None)
    assert "degraded" not in doc
    ids = _ids(doc)
    assert len(ids) == 5
    assert ids[0] == "i11"  # the strongest neighbour of alice's newest item
    assert not {"i10", "i5"} & set(ids)  # her recent items are excluded


def test_items_carry_their_metadata(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend", params={"user_id": "alice", "k": 3}).json
    for x in doc["items"]:
        assert x["metadata"] == item_meta(int(x["item_id"][1:]))
        assert isinstance(x["score"], float)


def test_unknown_user_with_a_known_item_gets_items_like_it(
        client: falcon.testing.TestClient, catalog: Catalog) -> None:
    doc = client.simulate_get("/recommend", params={"user_id": "bob", "item_id": "i20",
                                                    "k": 3}).json
    assert doc["based_on"] == "item"
    assert doc["version"] == catalog.version
    assert (doc["user_id"], doc["item_id"]) == ("bob", "i20")
    ids = _ids(doc)
    assert ids[:2] == ["i21", "i22"]
    assert "i20" not in ids
    assert doc["items"][0]["metadata"] == item_meta(21)


def test_a_known_user_wins_over_an_item(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend", params={"user_id": "alice", "item_id": "i20"}).json
    assert doc["based_on"] == "user"
    assert len(doc["items"]) == 10  # the default k


def test_strangers_get_popular_items(client: falcon.testing.TestClient,
                                     catalog: Catalog) -> None:
    doc = client.simulate_get("/recommend", params={"user_id": "nobody", "k": 3}).json
    assert doc["based_on"] == "popular"
    assert _ids(doc) == ["i5", "i6", "i7"]
    assert [x["score"] for x in doc["items"]] == [95.0, 94.0, 93.0]
    assert doc["version"] == catalog.version
    assert doc["items"][0]["metadata"] == item_meta(5)


def test_an_unknown_item_falls_back_to_popular_items(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend", params={"item_id": "nope", "k": 2}).json
    assert doc["based_on"] == "popular"
    assert _ids(doc) == ["i5", "i6"]


def test_no_ids_at_all_gets_popular_items(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend").json
    assert doc["based_on"] == "popular"
    assert _ids(doc) == [f"i{n}" for n in range(5, 15)]
    assert (doc["user_id"], doc["item_id"]) == (None, None)


def test_popular_items_of_a_category(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend", params={"category": "books"}).json
    assert doc["based_on"] == "popular"
    assert _ids(doc) == ["i1", "i3"]


def test_index_down_serves_popular_items_and_says_it_is_degraded(
        down_client: falcon.testing.TestClient) -> None:
    resp = down_client.simulate_get("/recommend", params={"user_id": "alice", "k": 3})
    assert resp.status_code == 200
    doc = resp.json
    assert doc["based_on"] == "popular"
    assert doc["degraded"] == ["index"]
    assert _ids(doc) == ["i6", "i7", "i8"]  # i5 is one of alice's recent items
    assert doc["items"][0]["metadata"] == item_meta(6)


def test_index_down_for_an_item_request_too(down_client: falcon.testing.TestClient) -> None:
    doc = down_client.simulate_get("/recommend", params={"item_id": "i20", "k": 2}).json
    assert (doc["based_on"], doc["degraded"]) == ("popular", ["index"])
    assert "i20" not in _ids(doc)


@pytest.mark.parametrize("params", [
    {"k": "0"}, {"k": "1001"}, {"k": "ten"}, {"k": "2.5"}, {"user_id": "u" * 257},
    {"item_id": "i" * 257},
])
def test_bad_parameters_are_400(client: falcon.testing.TestClient,
                                params: dict[str, str]) -> None:
    assert_error(client.simulate_get("/recommend", params=params), 400)


def test_k_up_to_1000_is_accepted(client: falcon.testing.TestClient) -> None:
    doc = client.simulate_get("/recommend", params={"user_id": "alice", "k": "1000"}).json
    assert doc["based_on"] == "user"
    assert 0 < len(doc["items"]) <= 38  # the whole catalogue minus her two recent items


# --- POST /events ----------------------------------------------------------------------------
def _events_file(data_dir: Path) -> list[str]:
    path = data_dir / "events.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def test_valid_events_are_appended_and_rejects_reported_by_index(
        client: falcon.testing.TestClient, data_dir: Path) -> None:
    body = [{"user_id": "u1", "item_id": "i1", "event": "click", "ts": T0},
            {"user_id": "", "item_id": "i2", "ts": T0},
            {"user_id": "u2", "item_id": "i3", "ts": "2024-01-01T00:00:00Z",
             "category": "books", "metadata": {"title": "Three"}},
            {"user_id": "u3", "item_id": "i4", "ts": -1}]
    resp = client.simulate_post("/events", json=body)
    assert resp.status_code == 202
    assert resp.json["accepted"] == 2
    rejected = resp.json["rejected"]
    assert [r["index"] for r in rejected] == [1, 3]
    assert "user_id is empty" in rejected[0]["reason"]
    assert "non-negative" in rejected[1]["reason"]
    lines = _events_file(data_dir)
    assert len(lines) == 2
    first, second = (parse_json(line) for line in lines)
    assert (first.user_id, first.item_id, first.event, first.ts) == ("u1", "i1", "click", T0)
    assert (second.ts, second.category, second.metadata) == (1704067200.0, "books",
                                                             {"title": "Three"})


def test_events_may_come_wrapped_in_an_object(client: falcon.testing.TestClient,
                                              data_dir: Path) -> None:
    resp = client.simulate_post("/events", json={"events": [
        {"user_id": "u1", "item_id": "i1", "ts": T0}]})
    assert resp.status_code == 202
    assert resp.json == {"accepted": 1, "rejected": []}
    assert len(_events_file(data_dir)) == 1
    client.simulate_post("/events", json=[{"user_id": "u2", "item_id": "i2", "ts": T0}])
    assert len(_events_file(data_dir)) == 2  # appended, not replaced


def test_a_batch_without_any_valid_event_is_400_and_writes_nothing(
        client: falcon.testing.TestClient, data_dir: Path) -> None:
    resp = client.simulate_post("/events", json=[{"user_id": "u1"}, "not an event"])
    doc = assert_error(resp, 400)
    assert doc["accepted"] == 0
    assert [r["index"] for r in doc["rejected"]] == [0, 1]
    assert "event must be a JSON object" in doc["rejected"][1]["reason"]
    assert _events_file(data_dir) == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"events": []}', b'{"x": 1}',
                                  b'"text"', b"42"])
def test_bodies_that_are_not_events_are_400(client: falcon.testing.TestClient,
                                            body: bytes) -> None:
    assert_error(client.simulate_post("/events", body=body), 400)


def test_too_large_a_body_is_413(data_dir: Path, index_url: str) -> None:
    client = _api(data_dir, index_url, api_max_body_bytes=1000)
    events = [{"user_id": f"user-{n}", "item_id": "i1", "ts": T0} for n in range(40)]
    doc = assert_error(client.simulate_post("/events", json=events), 413)
    assert "1000 bytes" in doc["description"]
    assert _events_file(data_dir) == []


def test_too_many_events_in_one_call_is_413(data_dir: Path, index_url: str) -> None:
    client = _api(data_dir, index_url, api_max_batch=5)
    events = [{"user_id": "u", "item_id": "i1", "ts": T0}] * 6
    doc = assert_error(client.simulate_post("/events", json=events), 413)
    assert "at most 5 events" in doc["description"]
    assert client.simulate_post("/events", json=events[:5]).status_code == 202


# --- health, readiness, errors ----------------------------------------------------------------
def test_health_is_ok(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/healthz").json == {"status": "ok"}


def test_ready_when_the_index_serves_a_version(client: falcon.testing.TestClient,
                                               catalog: Catalog) -> None:
    resp = client.simulate_get("/readyz")
    assert resp.status_code == 200
    assert resp.json == {"ready": True, "version": catalog.version}


def test_not_ready_when_the_index_is_down(down_client: falcon.testing.TestClient) -> None:
    doc = assert_error(down_client.simulate_get("/readyz"), 503)
    assert doc["ready"] is False
    assert "index service" in doc["reason"]
    assert down_client.simulate_get("/healthz").status_code == 200


def test_unknown_routes_and_methods_are_json_errors(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get("/nope"), 404)
    assert_error(client.simulate_post("/recommend"), 405)
    assert_error(client.simulate_get("/events"), 405)


# --- the OpenAPI document ---------------------------------------------------------------------
def _routes(app: falcon.App) -> set[tuple[str, str]]:
    return {(route.path, m.method.lower())
            for route in falcon.inspect.inspect_routes(app)
            for m in route.methods if not m.internal}


def test_openapi_is_served_and_is_the_packaged_document(
        client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json == openapi_document()
    assert resp.json["openapi"].startswith("3.1")


def test_openapi_documents_exactly_the_routes_the_app_registers(
        client: falcon.testing.TestClient) -> None:
    doc = openapi_document()
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops
                  if method in {"get", "post", "put", "patch", "delete", "head", "options"}}
    assert documented == _routes(client.app)
    assert documented >= {("/recommend", "get"), ("/events", "post"), ("/healthz", "get"),
                          ("/readyz", "get"), ("/openapi.json", "get")}


def _resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(x) for x in node)) if node else set()
    return set()


def test_openapi_every_error_response_is_an_error_document() -> None:
    doc = openapi_document()
    error = "#/components/schemas/Error"
    assert set(_resolve(doc, {"$ref": error})["required"]) == {"title", "status"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = _resolve(doc, response)["content"]["application/json"]["schema"]
                schema = _resolve(doc, schema)
                assert schema.get("properties", {}).keys() >= {"title", "status"} or (
                    error in _refs(schema)), f"{method} {path} {status}"


def test_openapi_references_resolve_and_recommend_params_match_the_app() -> None:
    doc = openapi_document()
    for ref in _refs(doc):
        assert _resolve(doc, {"$ref": ref})
    params = {p["name"]: p for p in doc["paths"]["/recommend"]["get"]["parameters"]}
    assert set(params) == {"user_id", "item_id", "k", "category"}
    k = params["k"]["schema"]
    assert (k["minimum"], k["maximum"], k["default"]) == (1, 1000, 10)
    rec = _resolve(doc, {"$ref": "#/components/schemas/Recommendation"})
    assert rec["properties"]["based_on"]["enum"] == ["user", "item", "popular"]
    assert json.dumps(doc)  # plain JSON all the way down
