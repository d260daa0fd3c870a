"""The index service over HTTP (in process): search, similar, version, health, readiness."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import falcon
import falcon.testing
import numpy as np
import pytest
from support.planted_catalog import DIM, Catalog, settings_for

from recengine.index.app import create_app


def assert_error(resp: falcon.testing.Result, status: int) -> dict:
    """Every error is JSON: title and status (and usually a description)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json
    assert doc["status"] == status
    assert isinstance(doc["title"], str) and doc["title"]
    return doc


@pytest.fixture(scope="module")
def client(catalog: Catalog) -> falcon.testing.TestClient:
    app = create_app(settings_for(catalog.data_dir), load=False)
    app.state.load()  # type: ignore[attr-defined]
    return falcon.testing.TestClient(app)


def _query(seed: int = 0) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM + 1)
    v[-1] = 1.0
    return v.tolist()


def test_not_ready_until_the_version_is_loaded(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), load=False)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/healthz").json == {"status": "ok"}
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503
    assert ready.json["ready"] is False
    assert_error(client.simulate_post("/search", json={"vector": _query()}), 503)
    assert_error(client.simulate_post("/similar", json={"item_ids": ["i1"]}), 503)
    assert_error(client.simulate_get("/version"), 503)


def test_ready_once_loaded(client: falcon.testing.TestClient, catalog: Catalog) -> None:
    resp = client.simulate_get("/readyz")
    assert resp.status_code == 200
    assert resp.json == {"ready": True, "version": catalog.version}


def test_version_endpoint_describes_the_served_version(client: falcon.testing.TestClient,
                                                       catalog: Catalog) -> None:
    doc = client.simulate_get("/version").json
    assert doc["version"] == catalog.version
    assert doc["items"] == len(catalog.item_ids)
    assert doc["dim"] == DIM + 1
    assert doc["index_type"] == "flat"
    assert doc["manifest"]["checksum"].startswith("sha256:")


def test_search_by_vector_returns_the_models_top_k(client: falcon.testing.TestClient,
                                                   catalog: Catalog) -> None:
    q = _query(1)
    resp = client.simulate_post("/search", json={"vector": q, "k": 5})
    assert resp.status_code == 200
    assert resp.json["version"] == catalog.version
    [hits] = resp.json["results"]
    assert [h["item_id"] for h in hits] == catalog.expected_top(np.array(q), 5)
    # Scored by the ranking formula (no recent items, no popularity weight in this catalogue):
    # the model's rank bonus, blend * (1 - rank / candidates).
    scores = [h["score"] for h in hits]
    np.testing.assert_allclose(scores, 0.3 * (1 - np.arange(5) / 20), rtol=1e-6)


def test_search_takes_a_batch_of_vectors(client: falcon.testing.TestClient,
                                         catalog: Catalog) -> None:
    queries = [_query(2), _query(3)]
    resp = client.simulate_post("/search", json={"vectors": queries, "k": 3})
    results = resp.json["results"]
    assert len(results) == 2
    for q, hits in zip(queries, results, strict=True):
        assert [h["item_id"] for h in hits] == catalog.expected_top(np.array(q), 3)


def test_search_never_returns_excluded_items(client: falcon.testing.TestClient,
                                             catalog: Catalog) -> None:
    q = _query(4)
    best = catalog.expected_top(np.array(q), 3)
    [hits] = client.simulate_post("/search", json={"vector": q, "k": 5,
                                                   "exclude": best}).json["results"]
    ids = [h["item_id"] for h in hits]
    assert not set(best) & set(ids)
    assert ids == catalog.expected_top(np.array(q), 5, exclude=set(best))


def test_search_with_recent_items_puts_their_neighbours_first(
        client: falcon.testing.TestClient) -> None:
    body = {"vector": _query(5), "k": 4, "recent": ["i10"], "exclude": ["i10"]}
    [hits] = client.simulate_post("/search", json=body).json["results"]
    ids = [h["item_id"] for h in hits]
    assert ids[0] == "i11"  # i10's strongest neighbour (0.9) beats any model bonus (<= 0.3)
    assert "i12" in ids
    assert "i10" not in ids
    assert all(a["score"] >= b["score"] for a, b in pairwise(hits))


def test_similar_items_are_the_co_occurrence_neighbours_first(
        client: falcon.testing.TestClient, catalog: Catalog) -> None:
    resp = client.simulate_post("/similar", json={"item_ids": ["i10"], "k": 3})
    assert resp.status_code == 200
    assert resp.json["version"] == catalog.version
    ids = [h["item_id"] for h in resp.json["results"]]
    assert ids[:2] == ["i11", "i12"]
    assert len(ids) == 3
    assert "i10" not in ids  # never the item itself


def test_similar_respects_k_and_exclude(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_post("/similar", json={"item_ids": ["i10"], "k": 7,
                                                  "exclude": ["i11"]})
    ids = [h["item_id"] for h in resp.json["results"]]
    assert len(ids) == 7
    assert ids[0] == "i12"
    assert "i11" not in ids and "i10" not in ids


def test_similar_to_unknown_items_is_404(client: falcon.testing.TestClient,
                                         catalog: Catalog) -> None:
    doc = assert_error(client.simulate_post("/similar", json={"item_ids": ["i1", "nope"]}),
                       404)
    assert "nope" in doc["description"]
    assert f"version {catalog.version}" in doc["description"]


@pytest.mark.parametrize("body", [
    {"vector": [1.0, 2.0]},  # wrong dimension
    {"vectors": [[1.0] * (DIM + 1), [1.0] * DIM]},  # ragged
    {"vector": [[1.0] * (DIM + 1)]},  # nested too deep
    {"vector": ["a"] * (DIM + 1)},
    {"vector": [1.0] * (DIM + 1), "k": 0},
    {"vector": [1.0] * (DIM + 1), "k": 1001},
    {"vector": [1.0] * (DIM + 1), "k": "ten"},
    {"vector": [1.0] * (DIM + 1), "k": 2.5},
    {"vector": [1.0] * (DIM + 1), "k": True},
    {"vector": [1.0] * (DIM + 1), "exclude": "i1"},
    {"vector": [1.0] * (DIM + 1), "recent": [1, 2]},
    {"k": 5},  # no vector at all
    {"vectors": [[1.0] * (DIM + 1)] * 257},  # too many at once
])
def test_bad_search_requests_are_400(client: falcon.testing.TestClient, body: dict) -> None:
    assert_error(client.simulate_post("/search", json=body), 400)


def test_non_finite_vectors_are_400(client: falcon.testing.TestClient) -> None:
    body = json.dumps({"vector": [float("nan")] + [1.0] * DIM})  # Python writes NaN
    doc = assert_error(client.simulate_post("/search", body=body), 400)
    assert "finite" in doc["description"]


@pytest.mark.parametrize(("path", "body"), [
    ("/search", b"{not json"),
    ("/search", b""),
    ("/search", b"[1, 2, 3]"),
    ("/search", b'"a string"'),
    ("/similar", b"{not json"),
    ("/similar", b"[\"i1\"]"),
    ("/similar", b"null"),
])
def test_bodies_that_are_not_a_json_object_are_400(client: falcon.testing.TestClient,
                                                   path: str, body: bytes) -> None:
    assert_error(client.simulate_post(path, body=body), 400)


@pytest.mark.parametrize("body", [
    {"item_ids": []}, {"item_ids": "i1"}, {"item_ids": [1]}, {"item_ids": ["i1"], "k": -1},
    {},
])
def test_bad_similar_requests_are_400(client: falcon.testing.TestClient, body: dict) -> None:
    assert_error(client.simulate_post("/similar", json=body), 400)


def test_unknown_routes_and_methods_are_json_errors(client: falcon.testing.TestClient) -> None:
    assert_error(client.simulate_get("/nope"), 404)
    assert_error(client.simulate_get("/search"), 405)
