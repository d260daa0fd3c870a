"""The index service and the API as real gunicorn processes."""

from __future__ import annotations

import json

import pytest
import requests

pytestmark = pytest.mark.process


def test_index_serves_the_latest_version_and_searches(services, engine) -> None:
    version = requests.get(f"{services.index}/version", timeout=5).json()
    assert version["version"] == 2
    assert version["items"] > 100
    vec = [0.0] * (version["dim"] - 1) + [1.0]  # the bias column alone: the model's favourites
    r = requests.post(f"{services.index}/search", json={"vector": vec, "k": 7}, timeout=5)
    assert r.status_code == 200
    hits = r.json()["results"][0]
    assert len(hits) == 7
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_index_rejects_a_bad_dimension_with_a_json_400(services) -> None:
    r = requests.post(f"{services.index}/search", json={"vector": [1.0, 2.0]}, timeout=5)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert "dimension" in r.json()["title"].lower()


def test_recommend_for_a_known_user_excludes_their_recent_items(services, engine) -> None:
    r = requests.get(f"{services.api}/recommend",
                     params={"user_id": engine.known_user, "k": 10}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["based_on"] == "user"
    assert body["version"] == 2
    assert len(body["items"]) == 10
    from recengine.backends.registry import open_user_store

    record = open_user_store(services.settings.url("users")).get(engine.known_user)
    assert record is not None and record.row >= 0 and record.events > 0
    recent = {i for i, _ in record.recent}
    assert recent and not recent & {x["item_id"] for x in body["items"]}


def test_recommend_falls_back_to_the_item_then_to_popular(services, engine) -> None:
    by_item = requests.get(f"{services.api}/recommend",
                           params={"user_id": "nobody-knows-me", "item_id": engine.known_item},
                           timeout=5).json()
    assert by_item["based_on"] == "item"
    assert engine.known_item not in {x["item_id"] for x in by_item["items"]}
    stranger = requests.get(f"{services.api}/recommend", params={"user_id": "stranger"},
                            timeout=5).json()
    assert stranger["based_on"] == "popular"
    assert stranger["items"][0]["metadata"], "popular items carry their metadata"


def test_api_errors_are_json_with_a_4xx(services) -> None:
    r = requests.get(f"{services.api}/recommend", params={"k": "ten"}, timeout=5)
    assert r.status_code == 400 and r.json()["title"] == "Bad k"
    r = requests.post(f"{services.api}/events", data=b"{nope", timeout=5)
    assert r.status_code == 400 and r.json()["title"] == "Invalid JSON"
    r = requests.get(f"{services.api}/no-such-thing", timeout=5)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")


def test_post_events_appends_valid_ones_and_reports_each_reject(services, engine) -> None:
    before = engine.events_path.stat().st_size
    batch = [{"user_id": "poster", "item_id": engine.known_item, "event": "click",
              "ts": 1_760_000_000.0},
             {"user_id": "", "item_id": "x", "ts": 1.0},
             {"user_id": "poster", "item_id": "i1", "ts": "not a time"}]
    r = requests.post(f"{services.api}/events", json={"events": batch}, timeout=5)
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 1
    assert [x["index"] for x in body["rejected"]] == [1, 2]
    with engine.events_path.open("rb") as fh:
        fh.seek(before)
        appended = [json.loads(line) for line in fh]
    assert appended == [{"user_id": "poster", "item_id": engine.known_item, "event": "click",
                         "ts": 1_760_000_000.0}]


def test_openapi_document_is_served(services) -> None:
    doc = requests.get(f"{services.api}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    assert "/recommend" in doc["paths"] and "/events" in doc["paths"]


def test_the_index_marks_the_version_it_serves_so_pruning_keeps_it(services, engine) -> None:
    from recengine.backends.files import FileArtifactStore

    store = FileArtifactStore(engine.data_dir / "artifacts")
    served = requests.get(f"{services.index}/version", timeout=5).json()["version"]
    assert served in store.serving()
