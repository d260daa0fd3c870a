"""POST /events is the one write path open to clients: an API key can guard it."""

from __future__ import annotations

import json
from pathlib import Path

import falcon.testing
import pytest

from recengine.api.app import create_app
from recengine.config import Settings
from recengine.errors import ConfigError

EVENT = {"user_id": "u1", "item_id": "i1", "ts": 1_700_000_000.0}


def _client(tmp_path: Path, **settings: str) -> falcon.testing.TestClient:
    (tmp_path / "events.jsonl").touch()
    s = Settings.load({"data_dir": str(tmp_path), **settings}, env={})
    return falcon.testing.TestClient(create_app(s))


def test_without_the_key_posting_events_is_a_401_json_and_appends_nothing(tmp_path) -> None:
    client = _client(tmp_path, api_key="s3cret")
    r = client.simulate_post("/events", json=[EVENT])
    assert r.status_code == 401
    assert r.json["title"] == "Unauthorized" and r.headers["www-authenticate"] == "Bearer"
    r = client.simulate_post("/events", json=[EVENT], headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    assert (tmp_path / "events.jsonl").read_text() == ""


@pytest.mark.parametrize("headers", [{"X-API-Key": "s3cret"},
                                     {"Authorization": "Bearer s3cret"}])
def test_with_the_key_events_are_accepted(tmp_path, headers) -> None:
    client = _client(tmp_path, api_key="s3cret")
    r = client.simulate_post("/events", json=[EVENT], headers=headers)
    assert r.status_code == 202 and r.json["accepted"] == 1
    assert json.loads((tmp_path / "events.jsonl").read_text())["user_id"] == "u1"


def test_the_key_can_come_from_a_mounted_secret_file(tmp_path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("from-file\n")
    client = _client(tmp_path, api_key="ignored", api_key_file=str(key_file))
    assert client.simulate_post("/events", json=[EVENT],
                                headers={"X-API-Key": "from-file"}).status_code == 202
    assert client.simulate_post("/events", json=[EVENT],
                                headers={"X-API-Key": "ignored"}).status_code == 401


def test_a_missing_key_file_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="api_key_file"):
        _client(tmp_path, api_key_file=str(tmp_path / "nope"))


def test_reads_need_no_key(tmp_path) -> None:
    client = _client(tmp_path, api_key="s3cret")
    assert client.simulate_get("/healthz").status_code == 200
