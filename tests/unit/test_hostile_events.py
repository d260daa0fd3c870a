"""Every record is decided, never fatal: hostile lines are rejects with a reason, on every path
(the exact parser, the trainer's scanner, ``POST /events``, ``recengine eval``, the trainer)."""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path

import falcon
import falcon.testing
import pytest

from recengine.api.app import Events
from recengine.backends.registry import open_event_sink, open_metrics
from recengine.config import Settings
from recengine.evaluate import evaluate_file
from recengine.events import EventError, Limits, nesting_depth, parse_json, validate
from recengine.httputil import json_app
from recengine.trainer.learner import Learner
from recengine.trainer.run import build_trainer

T0 = 1_700_000_000
GOOD = b'{"user_id":"u1","item_id":"i1","event":"view","ts":1700000000}'


def hostile_lines(now: float) -> list[tuple[bytes, str]]:
    """Hostile JSON lines and (a part of) the reason each is rejected with."""
    event = '{{"user_id":"u1","item_id":"i1","ts":{}}}'
    return [
        (event.format("1" + "0" * 400).encode(), "too large a number"),
        (b"[" * 5000, "nested 5000 deep"),
        (b"{" * 5000, "nested 5000 deep"),
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":'
          + '{"a":' * 900 + "1" + "}" * 901).encode(), "nested 901 deep"),
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"a":'
          + "[" * 40 + "]" * 40 + "}}").encode(), "nested 42 deep"),
        (event.format(int(now + 86_400 * 365)).encode(), "in the future"),
        (event.format(int(now + 7200)).encode(), "in the future"),
        (event.format('"9000-01-01T00:00:00Z"').encode(), "in the future"),
        (event.format(-1).encode(), "non-negative"),
        (event.format('"0001-01-01T00:00:00Z"').encode(), "non-negative"),
        (event.format("NaN").encode(), "non-negative"),
        (event.format("-Infinity").encode(), "non-negative"),
        (event.format("1e999").encode(), "non-negative"),
        (b'{"user_id":"u\xff\xfe1","item_id":"i1","ts":1700000000}', "invalid JSON"),
        (b"\xc3\x28\xa0\xa1", "invalid JSON"),
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"t":"'
          + "x" * 1_048_576 + '"}}').encode(), "larger than 65536"),
        (('{"user_id":"' + "u" * 10_000 + '","item_id":"i1","ts":1700000000}').encode(),
         "longer than 256"),
        (('{"user_id":"u1","item_id":"' + "i" * 10_000 + '","ts":1700000000}').encode(),
         "longer than 256"),
        (event.format("1" * 5000).encode(), "invalid JSON"),
        (b'{"user_id":"u\\udcff","item_id":"i1","ts":1700000000}', "lone surrogate"),
        (b'{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"t":"\\ud83d"}}',
         "lone surrogate"),
        (b'{"user_id":"u1","item_id":"i1","ts":1700000000,"category":"\\udc80"}',
         "lone surrogate"),
        # Unknown keys are allowed (producers may send more than the schema), but bounded.
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"extra":' + "[" * 40 + "]" * 40
          + "}").encode(), "nested 41 deep"),
        (('{"user_id":"u1","item_id":"i1","ts":1700000000,"extra":"' + "z" * 70_000
          + '"}').encode(), "larger than 65536"),
    ]


@pytest.mark.parametrize("n", range(len(hostile_lines(0))))
def test_the_exact_parser_rejects_each_hostile_line_with_its_reason(n: int) -> None:
    line, reason = hostile_lines(time.time())[n]
    with pytest.raises(EventError, match=reason):
        parse_json(line)


def test_the_trainers_scanner_rejects_them_alike_and_keeps_the_good_lines() -> None:
    lines = hostile_lines(time.time())
    raws = [GOOD]
    for line, _ in lines:
        raws += [line, GOOD]
    batch, rejected = Learner(Settings()).decode(raws)
    assert len(batch) == len(lines) + 1
    assert [r.index for r in rejected] == list(range(1, 2 * len(lines), 2))
    for r, (line, reason) in zip(rejected, lines, strict=True):
        assert r.raw == line and reason in r.reason


def test_unknown_keys_are_decided_by_the_exact_parser_and_ignored() -> None:
    line = b'{"user_id":"u1","item_id":"i1","ts":1700000000,"colour":"red","x":[1,2]}'
    batch, rejected = Learner(Settings()).decode([line])
    assert len(batch) == 1 and not rejected
    assert parse_json(line).user_id == "u1"


def test_escaped_surrogate_pairs_are_characters_on_both_paths() -> None:
    line = b'{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"t":"\\ud83d\\ude00"}}'
    assert parse_json(line).metadata == {"t": "\U0001f600"}
    batch, rejected = Learner(Settings()).decode([line])
    assert not rejected and batch.item_info == {0: {"t": "\U0001f600"}}


def test_the_limits_are_settings() -> None:
    s = Settings(event_max_bytes=300, event_max_depth=3, event_max_future_s=0)
    limits = Limits.of(s)
    meta = b'{"user_id":"u1","item_id":"i1","ts":1700000000,"metadata":{"a":{"b":1}}}'
    with pytest.raises(EventError, match="nested 3 deep, more than 2"):
        parse_json(meta, Limits(max_depth=2))
    assert parse_json(meta, limits).metadata == {"a": {"b": 1}}
    with pytest.raises(EventError, match="larger than 300"):
        parse_json(GOOD[:-1] + b',"metadata":{"t":"' + b"x" * 300 + b'"}}', limits)
    soon = f'{{"user_id":"u1","item_id":"i1","ts":{time.time() + 60:.0f}}}'.encode()
    with pytest.raises(EventError, match="in the future"):
        parse_json(soon, limits)
    assert parse_json(soon).ts > time.time()  # within the default hour
    batch, rejected = Learner(s).decode([meta, soon])
    assert len(batch) == 1 and "in the future" in rejected[0].reason


@pytest.mark.parametrize("setting", ["event_max_bytes=10", "event_max_depth=1",
                                     "event_max_future_s=-1"])
def test_a_bad_limit_stops_with_one_line(setting: str) -> None:
    name, value = setting.split("=")
    with pytest.raises(Exception, match=f"{name} must be"):
        Settings(**{name: type(getattr(Settings(), name))(value)})


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth(b'{"t":"[[[[{{{{\\"[[["}') == 1
    assert nesting_depth(b'[[{"a":[1]}]]') == 4
    assert nesting_depth(b'"no brackets"') == 0


def test_validate_decides_decoded_values_it_never_foresaw() -> None:
    class Hostile(dict):
        def get(self, *args: object) -> object:
            raise MemoryError("boom")

    with pytest.raises(EventError, match="MemoryError"):
        validate(Hostile())
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = node = {}
    with pytest.raises(EventError, match="metadata nests deeper"):
        validate({"user_id": "u", "item_id": "i", "ts": T0, "metadata": deep})


# --- POST /events ------------------------------------------------------------------------------
@pytest.fixture
def events_api(tmp_path: Path) -> falcon.testing.TestClient:
    settings = Settings(data_dir=str(tmp_path), metrics_url="off")
    metrics = open_metrics(settings.url("metrics"), "api")
    app = json_app(falcon.App(), metrics)
    app.add_route("/events", Events(open_event_sink(settings), settings, metrics))
    return falcon.testing.TestClient(app)


@pytest.mark.parametrize("body", [b"[" * 5000, b"{" * 5000,
                                  b"[" * 1000 + b"]" * 1000,  # decodes; too deep to validate
                                  b'{"events":' + b"[" * 1000 + b"]" * 1000 + b"}",
                                  b'[{"user_id":"u","item_id":"i","ts":1' + b"0" * 400 + b"}]",
                                  b'[{"user_id":"u","item_id":"i","ts":NaN}]',
                                  b'[{"user_id":"u","item_id":"i","ts":Infinity}]',
                                  b"\xff\xfe[\x00"])
def test_hostile_bodies_are_4xx_json_errors(events_api: falcon.testing.TestClient,
                                            body: bytes) -> None:
    resp = events_api.simulate_post("/events", body=body,
                                    headers={"Content-Type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json["status"] == resp.status_code


def test_hostile_events_are_rejected_one_by_one(events_api: falcon.testing.TestClient,
                                                tmp_path: Path) -> None:
    now = time.time()
    body = [{"user_id": "u1", "item_id": "i1", "ts": T0},
            {"user_id": "u1", "item_id": "i1", "ts": 10**400},
            {"user_id": "u1", "item_id": "i1", "ts": now + 86_400},
            {"user_id": "u" * 10_000, "item_id": "i1", "ts": T0},
            {"user_id": "u1", "item_id": "i1", "ts": T0, "metadata": {"t": "x" * 70_000}},
            {"user_id": "u1", "item_id": "i1", "ts": T0,
             "metadata": json.loads('{"a":' * 40 + "1" + "}" * 40)},
            {"user_id": "u1", "item_id": "i1", "ts": T0, "metadata": {"t": "\udcff"}}]
    resp = events_api.simulate_post("/events", body=json.dumps(body).encode(),  # ASCII
                                    headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    reasons = {r["index"]: r["reason"] for r in resp.json["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "lone surrogate" in reasons[6]
    assert "too large a number" in reasons[1] and "in the future" in reasons[2]
    assert "longer than 256" in reasons[3] and "larger than 65536" in reasons[4]
    assert "nests deeper" in reasons[5]
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert [parse_json(x).ts for x in lines] == [T0]


# --- a hostile stream through recengine eval and the file trainer --------------------------------
def clean_lines(n: int = 1500, seed: int = 7) -> list[bytes]:
    """A clean stream in the past with structure to learn: each user keeps to a few items."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        u = rng.randrange(60)
        item = (u * 7 + rng.choice((0, 1, 2, 3, 5, 8))) % 120
        out.append(json.dumps({"user_id": f"u{u}", "item_id": f"i{item}", "event": "view",
                               "ts": T0 + k, "category": f"c{item % 4}"}).encode())
    return out


def mixed(clean: list[bytes], hostile: list[bytes], seed: int = 3) -> list[bytes]:
    """``clean`` in order with the hostile lines spread between them."""
    rng = random.Random(seed)
    places = sorted(rng.sample(range(len(clean)), len(hostile)))
    out, h = [], 0
    for n, line in enumerate(clean):
        while h < len(hostile) and places[h] == n:
            out.append(hostile[h])
            h += 1
        out.append(line)
    return out


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_recengine_eval_counts_hostile_lines_as_rejects_with_recall_unchanged(
        tmp_path: Path) -> None:
    clean = clean_lines()
    hostile = [line for line, _ in hostile_lines(time.time())]
    settings = Settings(data_dir=str(tmp_path), eval_batch_size=1, self_tuning=False)
    base = evaluate_file(write_lines(tmp_path / "clean.jsonl", clean), settings)
    got = evaluate_file(write_lines(tmp_path / "mixed.jsonl", mixed(clean, hostile)), settings)
    assert base["rejected"] == 0 and got["rejected"] == len(hostile)
    assert got["events"] == base["events"] == len(clean)
    assert base["recall_at_10"] > 0.02  # something was learned
    for key in ("evaluated", "recall_at_10", "popularity_recall_at_10", "items", "users"):
        assert got[key] == base[key], key


def _train(data_dir: Path, lines: list[bytes]) -> tuple[dict, Learner]:
    write_lines(data_dir / "events.jsonl", lines)
    settings = Settings(data_dir=str(data_dir), follow=False, batch_size=1, eval_sample=1.0,
                        self_tuning=False, metrics_url="off", publish_every_events=10**9,
                        checkpoint_every_events=10**9)
    trainer = build_trainer(settings)
    trainer.run()
    trainer.close()
    return vars(trainer.c), trainer.learner


def test_the_file_trainer_sends_each_hostile_line_to_the_dlq_once_and_learns_the_rest(
        tmp_path: Path) -> None:
    clean = clean_lines()
    cases = hostile_lines(time.time())
    (tmp_path / "clean").mkdir()
    (tmp_path / "mixed").mkdir()
    base, base_learner = _train(tmp_path / "clean", clean)
    got, learner = _train(tmp_path / "mixed", mixed(clean, [line for line, _ in cases]))
    assert got["rejected"] == len(cases) and got["applied"] == base["applied"] == len(clean)
    dlq = tmp_path / "mixed" / "events.dlq.jsonl"
    dead = [json.loads(x) for x in dlq.read_text().splitlines()]
    assert len(dead) == len(cases)
    for doc, (line, reason) in zip(dead, cases, strict=True):
        raw = doc["raw"].encode() if "raw" in doc else base64.b64decode(doc["raw_b64"])
        assert raw == line and reason in doc["reason"]
    assert learner.tracker.recall == base_learner.tracker.recall > 0.02
    assert learner.tracker.evaluated == base_learner.tracker.evaluated
    assert list(learner.items.ids) == list(base_learner.items.ids)
