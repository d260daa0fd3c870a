"""Tests of the synthetic interaction stream (recengine.synth)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.knn_reference import knn_recall

from recengine.synth import (
    CATEGORY_NAMES,
    EVENT_TYPES,
    LATEST_END_TS,
    MALFORMED_KINDS,
    MAX_ID_LENGTH,
    TIME_SCALES,
    SynthConfig,
    catalog,
    generate,
    parse_time_scale,
    write_stream,
)

# A small world that still spans several days (30k events over ~5 days), on a clock where a
# world day is a day of timestamps.
SMALL = SynthConfig(events=30_000, users=1_000, items=600, events_per_day=6_000.0,
                    time_scale=86_400 / 6_000, seed=11)
SESSION_GAP = 1_800.0
REQUIRED = {"user_id", "item_id", "event", "ts"}
OPTIONAL = {"category", "metadata"}


def schema_error(obj: Any) -> str | None:
    """Why a decoded line is not a valid event per the schema, or None if it is valid."""
    if not isinstance(obj, dict):
        return "not an object"
    if not obj.keys() >= REQUIRED:
        return "missing field"
    for key in ("user_id", "item_id"):
        value = obj[key]
        if not isinstance(value, str):
            return f"{key} not a string"
        if not value:
            return f"empty {key}"
        if len(value) > MAX_ID_LENGTH:
            return f"{key} too long"
    if not isinstance(obj["event"], str) or not obj["event"]:
        return "bad event"
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return "ts not a number"
    if not math.isfinite(ts) or ts < 0:
        return "bad ts value"
    return None


def line_error(line: str) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return "invalid json"
    return schema_error(obj)


def encode(rec: dict[str, Any] | str) -> str:
    return rec if isinstance(rec, str) else json.dumps(rec, separators=(",", ":"))


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any] | str]:
    return list(generate(SMALL))


@pytest.fixture(scope="module")
def events(stream: list[dict[str, Any] | str]) -> list[dict[str, Any]]:
    return [r for r in stream if isinstance(r, dict)]


@pytest.fixture(scope="module")
def items_by_id() -> dict[str, dict[str, Any]]:
    return {it["item_id"]: it for it in catalog(SMALL)}


def session_pairs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(previous item, item) of consecutive events of a user less than 30 min apart."""
    last: dict[str, dict[str, Any]] = {}
    pairs = []
    for ev in events:
        prev = last.get(ev["user_id"])
        in_session = prev is not None and ev["ts"] - prev["ts"] < SESSION_GAP
        if in_session and prev["item_id"] != ev["item_id"]:
            pairs.append((prev["item_id"], ev["item_id"]))
        last[ev["user_id"]] = ev
    return pairs


# --- determinism ----------------------------------------------------------------------


def test_same_seed_gives_identical_lines() -> None:
    cfg = SynthConfig(events=3_000, users=300, items=200, seed=5, malformed_rate=0.02)
    a = [encode(r) for r in generate(cfg)]
    b = [encode(r) for r in generate(cfg)]
    assert a == b
    assert any(isinstance(r, str) for r in generate(cfg))


def stream_digest(cfg: SynthConfig) -> str:
    """sha256 of the jsonl lines ``generate(cfg)`` yields."""
    h = hashlib.sha256()
    for rec in generate(cfg):
        h.update(encode(rec).encode("utf-8") + b"\n")
    return h.hexdigest()


# Taken from the single-module generator before it became a package: moving code between
# modules must not change a single line of the stream. Its time scale is the world's own
# clock (86,400 / events_per_day seconds between events), and its world the old defaults,
# both of which the old generator used.
PINNED = SynthConfig(events=5_000, users=400, items=300, seed=13, malformed_rate=0.02,
                     time_scale=86_400 / 30_000, activity_sigma=1.0, zipf_exponent=1.0,
                     walk_prob=0.25, mainstream_prob=0.06, resume_prob=0.3,
                     release_burst=5.0, drift=0.5)
PINNED_DIGEST = "78f5bb9913c530f43c9669e36dacb60b302f817f007c4a4cb6b5000d4b863a64"


def test_stream_for_a_fixed_seed_is_pinned() -> None:
    assert stream_digest(PINNED) == PINNED_DIGEST


def test_different_seed_gives_different_lines() -> None:
    cfg = SynthConfig(events=3_000, users=300, items=200, seed=5)
    a = [encode(r) for r in generate(cfg)]
    b = [encode(r) for r in generate(replace(cfg, seed=6))]
    assert len(a) > 0 and len(b) > 0
    assert a != b
    assert sum(x == y for x, y in zip(a, b, strict=False)) < len(a) // 10


# --- valid events ---------------------------------------------------------------------


def test_exact_number_of_valid_events(events: list[dict[str, Any]]) -> None:
    assert len(events) == SMALL.events


def test_valid_events_follow_the_schema(
    events: list[dict[str, Any]], items_by_id: dict[str, dict[str, Any]]
) -> None:
    categories = set(CATEGORY_NAMES[: SMALL.categories])
    seen: set[str] = set()
    with_meta = 0
    for ev in events:
        assert schema_error(ev) is None, ev
        assert REQUIRED <= ev.keys() <= REQUIRED | OPTIONAL, ev
        assert ev["user_id"].startswith("u") and ev["item_id"].startswith("i")
        assert ev["event"] in EVENT_TYPES
        assert isinstance(ev["ts"], float)
        assert ev["ts"] >= SMALL.first_ts
        item = items_by_id[ev["item_id"]]
        if ev["item_id"] not in seen:
            assert "category" in ev and "metadata" in ev, "first appearance carries metadata"
            seen.add(ev["item_id"])
        if "metadata" in ev:
            with_meta += 1
            assert ev["category"] == item["category"] and ev["category"] in categories
            assert ev["metadata"]["title"] == item["title"] and ev["metadata"]["title"]
            assert ev["metadata"]["price"] == item["price"] > 0
        else:
            assert "category" not in ev
    share = with_meta / len(events)
    assert len(seen) / len(events) < share < len(seen) / len(events) + 0.15


def test_timestamps_non_decreasing_and_span_days(events: list[dict[str, Any]]) -> None:
    ts = np.array([ev["ts"] for ev in events])
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= SMALL.first_ts and ts[0] < SMALL.first_ts + 3_600
    expected_days = SMALL.events / SMALL.events_per_day
    span_days = (ts[-1] - ts[0]) / 86_400
    assert 0.7 * expected_days < span_days < 1.3 * expected_days
    assert len(np.unique(ts)) > 0.9 * len(ts)  # real spacing, not one timestamp


def test_default_stream_spans_days_of_the_worlds_clock() -> None:
    cfg = SynthConfig()
    assert 5 < cfg.events / cfg.events_per_day < 10  # 200k events ~ a week


# --- time scale -----------------------------------------------------------------------


def without_ts(rec: dict[str, Any] | str) -> tuple[Any, ...]:
    return ("malformed",) if isinstance(rec, str) else tuple(
        (k, v) for k, v in rec.items() if k != "ts"
    )


def test_time_scale_only_scales_the_timestamps() -> None:
    fast = SynthConfig(events=8_000, users=500, items=300, seed=3, malformed_rate=0.02)
    slow = replace(fast, time_scale="days")
    a, b = list(generate(fast)), list(generate(slow))
    assert [without_ts(r) for r in a] == [without_ts(r) for r in b]
    ratio = slow.mean_gap_s / fast.mean_gap_s
    # Each stream from its own first timestamp: the slow one starts earlier, to end in the
    # past.
    f0, s0 = fast.first_ts, slow.first_ts
    assert s0 < f0
    for x, y in zip(a, b, strict=True):
        if isinstance(x, dict) and isinstance(y, dict):
            # Both are rounded to 1/100 s; the fast one's rounding is magnified by the ratio.
            assert y["ts"] - s0 == pytest.approx((x["ts"] - f0) * ratio, abs=0.01 * ratio)
    fast_items = {it["item_id"]: it["release_ts"] for it in catalog(fast)}
    for it in catalog(slow):
        rel = fast_items[it["item_id"]]
        if rel is None:
            assert it["release_ts"] is None
        else:
            assert it["release_ts"] - s0 == pytest.approx((rel - f0) * ratio, abs=ratio)


def test_a_long_stream_at_a_slow_clock_ends_in_the_past_and_one_too_long_is_refused() -> None:
    cfg = SynthConfig(events=10_000, users=600, items=400, seed=8, time_scale="days")
    ts = [r["ts"] for r in generate(cfg) if isinstance(r, dict)]
    assert 0 < cfg.first_ts <= ts[0] and ts[-1] < LATEST_END_TS
    # A start given explicitly is used as given.
    assert SynthConfig(events=100, start_ts=1e9).first_ts == 1e9
    with pytest.raises(ValueError, match="before 1970"):
        SynthConfig(events=200_000, time_scale="days")


@pytest.mark.parametrize("scale", ["seconds", "minutes", "days", 2.5])
def test_time_scale_is_the_mean_gap_between_events(scale: str | float) -> None:
    cfg = SynthConfig(events=10_000, users=600, items=400, seed=8, time_scale=scale)
    ts = [r["ts"] for r in generate(cfg) if isinstance(r, dict)]
    gap = (ts[-1] - ts[0]) / (len(ts) - 1)
    expected = TIME_SCALES[scale] if isinstance(scale, str) else scale
    assert 0.8 * expected < gap < 1.25 * expected
    assert ts == sorted(ts) and ts[0] >= cfg.first_ts and ts[-1] < LATEST_END_TS


def test_time_scale_arguments() -> None:
    assert parse_time_scale("minutes") == "minutes"
    assert parse_time_scale("2.5") == 2.5
    for bad in ("weeks", "0", "-3", "nan", "inf", ""):
        with pytest.raises(ValueError):
            parse_time_scale(bad)
    assert SynthConfig(time_scale="hours").mean_gap_s == 3_600.0
    assert SynthConfig(time_scale=0.25).mean_gap_s == 0.25


def test_event_type_frequencies(events: list[dict[str, Any]]) -> None:
    counts = Counter(ev["event"] for ev in events)
    assert set(counts) == set(EVENT_TYPES)
    view, click, cart, purchase = (counts[t] for t in EVENT_TYPES)
    assert view > 0.6 * len(events)
    assert view > click > cart > purchase > 0


def test_items_never_appear_before_release(
    events: list[dict[str, Any]], items_by_id: dict[str, dict[str, Any]]
) -> None:
    for ev in events:
        release = items_by_id[ev["item_id"]]["release_ts"]
        assert release is None or ev["ts"] >= release


# --- malformed lines ------------------------------------------------------------------


def test_malformed_share_close_to_rate() -> None:
    cfg = SynthConfig(events=40_000, users=1_000, items=600, malformed_rate=0.02, seed=3)
    bad = sum(isinstance(r, str) for r in generate(cfg))
    share = bad / (cfg.events + bad)
    assert abs(share - cfg.malformed_rate) < 0.004


def test_default_malformed_share(stream: list[dict[str, Any] | str]) -> None:
    bad = sum(isinstance(r, str) for r in stream)
    assert abs(bad / len(stream) - SMALL.malformed_rate) < 0.002
    assert bad > 0


def test_malformed_lines_are_invalid_and_varied() -> None:
    cfg = SynthConfig(events=20_000, users=800, items=500, malformed_rate=0.05, seed=9)
    reasons: Counter[str] = Counter()
    n_bad = 0
    for rec in generate(cfg):
        if isinstance(rec, str):
            n_bad += 1
            reason = line_error(rec)
            assert reason is not None, f"malformed line is valid: {rec!r}"
            reasons[reason] += 1
        else:
            assert line_error(encode(rec)) is None
    assert n_bad > 500
    assert len(reasons) >= 8, reasons
    for reason in ("invalid json", "missing field", "empty item_id", "user_id not a string"):
        assert reasons[reason] > 0, reasons
    assert reasons["user_id too long"] + reasons["item_id too long"] > 0
    assert reasons["ts not a number"] > 0 and reasons["bad ts value"] > 0
    assert len(MALFORMED_KINDS) >= 8


def test_zero_malformed_rate() -> None:
    cfg = SynthConfig(events=5_000, users=300, items=200, malformed_rate=0.0)
    assert all(isinstance(r, dict) for r in generate(cfg))


# --- realism --------------------------------------------------------------------------


def test_new_users_and_items_keep_appearing(events: list[dict[str, Any]]) -> None:
    n = len(events)
    first_user: dict[str, int] = {}
    first_item: dict[str, int] = {}
    for k, ev in enumerate(events):
        first_user.setdefault(ev["user_id"], k)
        first_item.setdefault(ev["item_id"], k)
    for first in (first_user, first_item):
        pos = np.array(list(first.values())) / n
        assert np.sum(pos > 0.8) >= 0.03 * len(pos)  # the last fifth still brings new ones
        assert np.sum((pos > 0.5) & (pos <= 0.8)) >= 0.05 * len(pos)


def test_new_items_get_a_burst(
    events: list[dict[str, Any]], items_by_id: dict[str, dict[str, Any]]
) -> None:
    t0, t1 = events[0]["ts"], events[-1]["ts"]
    day = 86_400.0
    released = {
        i: it["release_ts"]
        for i, it in items_by_id.items()
        if it["release_ts"] is not None and it["release_ts"] < t1 - 2 * day
    }
    early = late = 0
    for ev in events:
        rel = released.get(ev["item_id"])
        if rel is not None:
            age = ev["ts"] - rel
            early += age < day
            late += day <= age < 2 * day
    assert t1 - t0 > 3 * day and len(released) > 20
    assert early > 1.3 * late  # more traffic in the first day after release than the next


def test_item_popularity_is_heavy_tailed(events: list[dict[str, Any]]) -> None:
    counts = np.array(sorted(Counter(ev["item_id"] for ev in events).values(), reverse=True))
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top > 0.3  # uniform would be 0.10 (default-size streams: ~0.5)
    assert counts[0] > 10 * np.median(counts)


def test_user_activity_is_skewed(events: list[dict[str, Any]]) -> None:
    counts = np.array(list(Counter(ev["user_id"] for ev in events).values()))
    assert counts.max() > 10 * np.median(counts)


def test_consecutive_session_items_are_related(
    events: list[dict[str, Any]], items_by_id: dict[str, dict[str, Any]]
) -> None:
    pairs = session_pairs(events)
    assert len(pairs) > 0.5 * len(events)
    cat = Counter(items_by_id[ev["item_id"]]["category"] for ev in events)
    clu = Counter(items_by_id[ev["item_id"]]["cluster"] for ev in events)
    n = len(events)
    chance_cat = sum((c / n) ** 2 for c in cat.values())
    chance_clu = sum((c / n) ** 2 for c in clu.values())
    same_cat = np.mean([items_by_id[a]["category"] == items_by_id[b]["category"] for a, b in pairs])
    same_clu = np.mean([items_by_id[a]["cluster"] == items_by_id[b]["cluster"] for a, b in pairs])
    assert same_cat > 3 * chance_cat and same_cat > 0.4
    assert same_clu > 4 * chance_clu and same_clu > 0.6


def test_sessions_are_separated_by_gaps(events: list[dict[str, Any]]) -> None:
    last: dict[str, float] = {}
    gaps = []
    for ev in events:
        if ev["user_id"] in last:
            gaps.append(ev["ts"] - last[ev["user_id"]])
        last[ev["user_id"]] = ev["ts"]
    g = np.array(gaps)
    assert np.median(g) < 300  # within a session: tens of seconds to minutes
    assert 0.05 < np.mean(g > SESSION_GAP) < 0.4  # session breaks of hours or days
    assert np.quantile(g, 0.99) > 86_400 / 2


# The default world scaled down: as many events per user and items per user as the default
# 200k events, 5,000 users and 3,000 items.
SCALED = SynthConfig(events=40_000, users=1_000, items=600, seed=11, malformed_rate=0.0)


def test_popularity_is_a_strong_baseline_that_item_knn_beats_as_on_real_data() -> None:
    """Prequential recall@10 as on MovieLens (popularity 0.0554, item-kNN 0.1151: 2.1x)."""
    events = [(r["user_id"], r["item_id"], r["ts"]) for r in generate(SCALED)
              if isinstance(r, dict)]
    r = knn_recall(events)
    pop, knn = r["popularity_recall_at_10"], r["recall_at_10"]
    assert 0.03 < pop < 0.10, pop
    assert 1.8 < knn / pop < 3.7, (knn, pop)


# --- writers --------------------------------------------------------------------------


def test_jsonl_writer_matches_generate(tmp_path: Path) -> None:
    cfg = SynthConfig(events=4_000, users=300, items=200, malformed_rate=0.02, seed=2)
    out = tmp_path / "sub" / "events.jsonl"
    summary = write_stream(out, cfg)
    lines = out.read_text(encoding="utf-8").splitlines()
    expected = [encode(r) for r in generate(cfg)]
    assert lines == expected
    assert summary.events == cfg.events
    assert summary.malformed == sum(line_error(x) is not None for x in lines) > 0
    assert summary.events + summary.malformed == len(lines)
    valid = [json.loads(x) for x in lines if line_error(x) is None]
    assert summary.users == len({e["user_id"] for e in valid})
    assert summary.items == len({e["item_id"] for e in valid})
    assert summary.first_ts == valid[0]["ts"] and summary.last_ts == valid[-1]["ts"]


def test_csv_writer(tmp_path: Path) -> None:
    cfg = SynthConfig(events=4_000, users=300, items=200, malformed_rate=0.03, seed=4)
    out = tmp_path / "events.csv"
    summary = write_stream(out, cfg, fmt="csv")
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["user_id", "item_id", "event", "ts", "category", "title"]
    body = rows[1:]
    assert len(body) == summary.events + summary.malformed

    def row_ok(row: list[str]) -> bool:
        if len(row) != 6 or not row[0] or not row[1] or not row[2]:
            return False
        if len(row[0]) > MAX_ID_LENGTH or len(row[1]) > MAX_ID_LENGTH:
            return False
        try:
            ts = float(row[3])
        except ValueError:
            return False
        return math.isfinite(ts) and ts >= 0

    good = [r for r in body if row_ok(r)]
    bad = [r for r in body if not row_ok(r)]
    assert len(good) == cfg.events and len(bad) == summary.malformed > 0
    assert any(len(r) != 6 for r in bad) and any(len(r) == 6 for r in bad)
    valid = [r for r in generate(cfg) if isinstance(r, dict)]
    assert [(r[0], r[1], r[2], float(r[3])) for r in good] == [
        (e["user_id"], e["item_id"], e["event"], e["ts"]) for e in valid
    ]
    for row, ev in zip(good, valid, strict=True):
        assert row[4] == ev.get("category", "")
        assert row[5] == (ev["metadata"]["title"] if "metadata" in ev else "")


def test_tsv_writer(tmp_path: Path) -> None:
    cfg = SynthConfig(events=4_000, users=300, items=200, malformed_rate=0.05, seed=4)
    out = tmp_path / "events.tsv"
    summary = write_stream(out, cfg, fmt="tsv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == cfg.events == summary.events
    assert summary.malformed == 0
    parsed = [line.split("\t") for line in lines]
    assert all(len(p) == 3 for p in parsed)
    ts = [float(p[2]) for p in parsed]
    assert ts == sorted(ts)
    valid = [r for r in generate(cfg) if isinstance(r, dict)]
    assert [(p[0], p[1], t) for p, t in zip(parsed, ts, strict=True)] == [
        (e["user_id"], e["item_id"], e["ts"]) for e in valid
    ]


def test_unknown_format_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_stream(tmp_path / "x", SynthConfig(events=10), fmt="parquet")


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"events": 0},
        {"users": -1},
        {"items": 0},
        {"malformed_rate": 0.7},
        {"malformed_rate": -0.1},
        {"walk_prob": 0.9, "switch_prob": 0.2},
        {"event_type_probs": (0.5, 0.5, 0.5, 0.5)},
        {"mean_session_steps": 0.5},
        {"events_per_day": 0.0},
        {"time_scale": "weeks"},
        {"time_scale": 0},
        {"time_scale": -1.0},
        {"time_scale": math.nan},
        {"time_scale": True},
        {"events": 2_000_000, "time_scale": "days"},  # would end after the year 9999
    ],
)
def test_invalid_config_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**changes)


def test_tiny_configs_work() -> None:
    for cfg in (
        SynthConfig(events=1, users=1, items=1),
        SynthConfig(events=200, users=2, items=3, clusters=5, categories=40),
        SynthConfig(events=200, users=5, items=5, initial_user_share=0.0, initial_item_share=0.0),
    ):
        valid = [r for r in generate(cfg) if isinstance(r, dict)]
        assert len(valid) == cfg.events
        assert all(schema_error(e) is None for e in valid)
    names = {it["category"] for it in catalog(SynthConfig(items=2_000, categories=40))}
    assert "category-31" in names or len(names) > 30
