"""Both services' OpenAPI documents are exactly what the services register, accept and answer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import jsonschema_rs
import pytest
from support.net import free_port
from support.planted_catalog import DIM, Catalog, publish_catalog, settings_for

from recengine.api import app as api_app
from recengine.events import EventError, Limits, validate
from recengine.index import app as index_app
from recengine.metrics import Metrics
from recengine.openapi import Document

DOCUMENTS = {"api": api_app.DOCUMENT, "index": index_app.DOCUMENT}
T0 = 1_700_000_000


class Recorded(Metrics):
    """Metrics that remember what was sent."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.sent: list[tuple[str, str]] = []

    def incr(self, name: str, count: int = 1) -> None:
        self.sent.append(("counter", name))

    def timing(self, name: str, ms: float) -> None:
        self.sent.append(("timer", name))


@pytest.fixture(scope="module")
def index(catalog: Catalog) -> falcon.testing.TestClient:
    app = index_app.create_app(settings_for(catalog.data_dir), load=False,
                               state=index_app.IndexState(settings_for(catalog.data_dir),
                                                          Recorded("index")))
    app.state.load()
    return falcon.testing.TestClient(app)


@pytest.fixture
def api(tmp_path: Path) -> falcon.testing.TestClient:
    """The API with its index service down: popular answers, degraded, and every error."""
    publish_catalog(tmp_path)
    app = api_app.create_app(settings_for(tmp_path, index_timeout_s=0.2,
                                          index_url=f"http://127.0.0.1:{free_port()}"))
    return falcon.testing.TestClient(app)


def _routes(app: falcon.App) -> set[tuple[str, str]]:
    return {(route.path, m.method.lower())
            for route in falcon.inspect.inspect_routes(app)
            for m in route.methods if not m.internal}


def conforms(client: falcon.testing.TestClient, service: str, method: str, path: str,
             **kwargs: Any) -> falcon.testing.Result:
    """Send the request and check the answer against the operation's documented response."""
    resp = client.simulate_request(method.upper(), path, **kwargs)
    doc = DOCUMENTS[service]
    route = path.split("?")[0]
    responses = doc.operation(route, method)["responses"]
    assert str(resp.status_code) in responses, f"{method} {path}: {resp.status_code} undocumented"
    response = doc.resolve(responses[str(resp.status_code)])
    schema = response["content"]["application/json"]["schema"]
    assert resp.headers["content-type"].startswith("application/json")
    errors = [e.message for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(resp.json)]
    assert not errors, f"{method} {path} {resp.status_code}: {errors}"
    return resp


# --- the documents and the routes --------------------------------------------------------------
@pytest.mark.parametrize("service", ["api", "index"])
def test_every_route_is_documented_and_every_documented_route_exists(
        service: str, index: falcon.testing.TestClient, api: falcon.testing.TestClient) -> None:
    app = {"api": api, "index": index}[service].app
    assert DOCUMENTS[service].operations() == _routes(app)


def test_the_index_serves_its_own_document(index: falcon.testing.TestClient) -> None:
    resp = conforms(index, "index", "get", "/openapi.json")
    assert resp.json == json.loads(index_app.DOCUMENT.text)
    assert resp.json["info"]["title"] == "recengine index service"


@pytest.mark.parametrize("service", ["api", "index"])
def test_every_schema_is_valid_json_schema_and_every_reference_resolves(service: str) -> None:
    doc = DOCUMENTS[service]
    for name, schema in doc.doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(doc.resolve(schema)), name
    assert "$ref" not in json.dumps(doc.resolve(doc.doc["paths"]))


@pytest.mark.parametrize("service", ["api", "index"])
def test_every_error_response_is_an_error_document(service: str) -> None:
    doc = DOCUMENTS[service]
    for path, ops in doc.doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = doc.resolve(response)["content"]["application/json"]["schema"]
                validator = jsonschema_rs.Draft202012Validator(schema)
                where = f"{method} {path} {status}"
                assert not validator.is_valid({"status": int(status)}), where  # needs a title
                assert not validator.is_valid({"title": "Bad"}), where  # and a status
                extra = {"ready": False, "reason": "loading"} if path == "/readyz" else {}
                assert validator.is_valid({"title": "Bad", "status": int(status), **extra}), where


def test_a_recursive_reference_cannot_be_inlined() -> None:
    doc = Document("recengine.index")
    doc.doc["components"]["schemas"]["Loop"] = {"items": {"$ref": "#/components/schemas/Loop"}}
    with pytest.raises(ValueError, match="recursive"):
        doc.resolve({"$ref": "#/components/schemas/Loop"})


# --- the index service answers as documented ---------------------------------------------------
@pytest.mark.parametrize("example", ["vector", "vector_f32"])
def test_the_documented_search_examples_are_answered(index: falcon.testing.TestClient,
                                                     example: str) -> None:
    examples = index_app.DOCUMENT.operation("/search", "post")["requestBody"]["content"][
        "application/json"]["examples"]
    body = examples[example]["value"]
    assert DIM + 1 == 5  # the examples' dimension
    resp = conforms(index, "index", "post", "/search", json=body)
    assert len(resp.json["results"][0]) == body["k"]


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("post", "/search", {"vector": [1.0] * (DIM + 1)}, 200),
    ("post", "/search", {"vectors": [[1.0] * (DIM + 1)] * 3, "k": 2}, 200),
    ("post", "/search", {"vector": [1.0] * DIM}, 400),
    ("post", "/search", {"vector": [1.0] * (DIM + 1), "vectors": [[1.0] * (DIM + 1)]}, 400),
    ("post", "/search", {"vector": [10 ** 400] * (DIM + 1)}, 400),  # was a 500
    ("post", "/search", {"vector": [1e39] * (DIM + 1)}, 400),  # infinite as float32
    ("post", "/search", {"vector": ["1.5"] * (DIM + 1)}, 400),  # numpy would have read it
    ("post", "/search", {"vector_f32": "AAAA"}, 400),  # 3 bytes
    ("post", "/search", {"vector_f32": "AACA/w=="}, 400),  # 4 bytes: one float32, NaN
    ("post", "/search", {"vector": [1.0] * (DIM + 1), "k": 1001}, 400),
    ("post", "/similar", {"item_ids": ["i10"], "k": 2}, 200),
    ("post", "/similar", {"item_ids": ["i10", "nope"]}, 404),
    ("post", "/similar", {"item_ids": ["i10"], "exclude": [3]}, 400),
    ("get", "/version", None, 200),
    ("get", "/healthz", None, 200),
    ("get", "/readyz", None, 200),
])
def test_the_index_answers_as_its_document_says(index: falcon.testing.TestClient, method: str,
                                                path: str, body: Any, status: int) -> None:
    resp = conforms(index, "index", method, path, **({"json": body} if body else {}))
    assert resp.status_code == status, resp.text


def test_a_body_over_a_mebibyte_is_a_documented_413(index: falcon.testing.TestClient) -> None:
    body = json.dumps({"vector": [1.0] * 300_000})
    assert conforms(index, "index", "post", "/search", body=body).status_code == 413


def test_an_index_without_its_version_answers_as_documented(tmp_path: Path) -> None:
    client = falcon.testing.TestClient(index_app.create_app(settings_for(tmp_path), load=False))
    doc = conforms(client, "index", "get", "/readyz").json
    assert (doc["status"], doc["ready"], doc["title"]) == (503, False, "Not ready")
    assert conforms(client, "index", "get", "/version").status_code == 503
    assert conforms(client, "index", "post", "/search",
                    json={"vector": [1.0] * (DIM + 1)}).status_code == 503


def test_index_search_ignores_unknown_fields_as_the_schema_allows(
        index: falcon.testing.TestClient) -> None:
    resp = index.simulate_post("/search", json={"vector": [1.0] * (DIM + 1), "k": 1, "x": 1})
    assert resp.status_code == 200


# --- the API answers as documented ---------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("get", "/recommend", {"params": {"user_id": "u", "k": "3"}}, 200),
    ("get", "/recommend", {"params": {"k": "0"}}, 400),
    ("get", "/recommend", {"params": {"category": "c" * 257}}, 400),
    ("post", "/events", {"json": [{"user_id": "u", "item_id": "i", "ts": T0}]}, 202),
    ("post", "/events", {"json": {"events": [{"user_id": "u", "item_id": "i", "ts": T0}]}}, 202),
    ("post", "/events", {"json": [{"user_id": "u"}]}, 400),
    ("post", "/events", {"json": {"events": "u"}}, 400),
    ("post", "/events", {"body": "[NaN]"}, 400),
    ("get", "/readyz", {}, 503),
    ("get", "/healthz", {}, 200),
    ("get", "/openapi.json", {}, 200),
])
def test_the_api_answers_as_its_document_says(api: falcon.testing.TestClient, method: str,
                                              path: str, kwargs: dict, status: int) -> None:
    assert conforms(api, "api", method, path, **kwargs).status_code == status


def test_the_documented_event_examples_are_accepted(api: falcon.testing.TestClient) -> None:
    examples = api_app.DOCUMENT.operation("/events", "post")["requestBody"]["content"][
        "application/json"]["examples"]
    for example in examples.values():
        resp = conforms(api, "api", "post", "/events", json=example["value"])
        assert resp.status_code == 202 and resp.json["rejected"] == []


def test_a_recommend_parameter_error_names_the_parameter(api: falcon.testing.TestClient) -> None:
    doc = api.simulate_get("/recommend", params={"item_id": "i" * 257}).json
    assert doc["title"] == "Bad item_id"
    assert doc["description"].startswith("item_id: ") and "256" in doc["description"]
    doc = api.simulate_get("/recommend", params={"k": "ten"}).json
    assert doc["title"] == "Bad k" and "integer" in doc["description"]


def test_an_index_body_error_names_the_field(index: falcon.testing.TestClient) -> None:
    doc = index.simulate_post("/search", json={"vector": [1.0] * (DIM + 1), "k": 0}).json
    assert (doc["title"], doc["description"]) == ("Bad k", "k: 0 is less than the minimum of 1")
    doc = index.simulate_post("/search", json={"k": 3}).json
    assert doc["description"] == "body: give exactly one of vector, vectors, vector_f32"
    doc = index.simulate_post("/search", json={"vectors": [[1.0] * (DIM + 1)] * 300}).json
    assert doc["title"] == "Bad vectors" and len(doc["description"]) <= 300


# --- the Event schema and events.validate agree --------------------------------------------------
EVENT = {"user_id": "u1", "item_id": "i1", "ts": T0}


@pytest.mark.parametrize("change", [
    {}, {"user_id": 42}, {"user_id": -7}, {"user_id": "  u  "}, {"user_id": " " + "u" * 256},
    {"user_id": "u" * 257}, {"user_id": ""}, {"user_id": "   "}, {"user_id": True},
    {"user_id": None}, {"item_id": 10 ** 255}, {"item_id": 10 ** 256}, {"item_id": -10 ** 254},
    {"item_id": -10 ** 255}, {"event": "click"}, {"event": " "}, {"event": ""},
    {"event": "e" * 64}, {"event": "e" * 65}, {"event": 3},
    {"ts": 0}, {"ts": -1}, {"ts": 1.5}, {"ts": 253402300799}, {"ts": 1.7e12},
    {"ts": 253402300799000}, {"ts": 253402300799001}, {"ts": True}, {"ts": None},
    {"ts": "1700000000"}, {"ts": "1700000000.25"}, {"ts": "-5"},
    {"ts": "2024-01-01T00:00:00Z"}, {"ts": "2024-01-01T00:00:00.123+02:00"},
    {"ts": "1969-12-31T23:59:59Z"}, {"ts": "1970-01-02T00:00:00+05:00"},
    {"ts": "9999-12-31T23:59:59Z"}, {"ts": "2024-01-01T00:00:00Z\n"}, {"ts": "yesterday"},
    {"category": "books"}, {"category": ""}, {"category": None}, {"category": "c" * 257},
    {"category": 5}, {"metadata": {"title": "Dune"}}, {"metadata": None}, {"metadata": []},
])
def test_the_event_schema_accepts_what_the_service_accepts(change: dict) -> None:
    event = {**EVENT, **change}
    schema = api_app.DOCUMENT.resolve({"$ref": "#/components/schemas/Event"})
    in_schema = jsonschema_rs.Draft202012Validator(schema).is_valid(event)
    try:
        # Without the future-time bound, which depends on the clock (a schema cannot say it).
        validate(event, Limits(future_skew_s=math.inf))
        accepted = True
    except EventError:
        accepted = False
    assert in_schema == accepted, (event, in_schema, accepted)


def test_a_missing_field_is_refused_by_both() -> None:
    schema = api_app.DOCUMENT.resolve({"$ref": "#/components/schemas/Event"})
    for name in ("user_id", "item_id", "ts"):
        event = {k: v for k, v in EVENT.items() if k != name}
        assert not jsonschema_rs.Draft202012Validator(schema).is_valid(event)
        with pytest.raises(EventError):
            validate(event)


# --- one timing middleware for both --------------------------------------------------------------
def test_the_index_times_each_request_by_route_and_status(
        index: falcon.testing.TestClient) -> None:
    sent: list[tuple[str, str]] = index.app.state.metrics.sent
    sent.clear()
    index.simulate_post("/search", json={"vector": [1.0] * (DIM + 1)})
    index.simulate_post("/similar", json={"item_ids": ["nope"]})
    index.simulate_get("/openapi.json")
    index.simulate_get("/no/such/path")
    assert sent == [("timer", "request.search.200"), ("counter", "status.2xx"),
                    ("timer", "request.similar.404"), ("counter", "status.4xx"),
                    ("timer", "request.openapi_json.200"), ("counter", "status.2xx"),
                    ("timer", "request.unknown.404"), ("counter", "status.4xx")]
