"""The event schema: what parses, what is rejected and why."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from support.event_lines import MALFORMED_JSON

from recengine.events import (
    Event,
    EventBatch,
    EventError,
    format_for_path,
    is_csv_header,
    parse,
    parse_json,
    parse_ts,
    validate,
)


def test_valid_json_line_parses_with_all_fields() -> None:
    line = json.dumps({"user_id": "u1", "item_id": "i9", "event": "purchase", "ts": 1700000000.5,
                       "category": "books", "metadata": {"title": "Dune"}})
    e = parse(line.encode(), "jsonl")
    assert e == Event("u1", "i9", "purchase", 1700000000.5, "books", {"title": "Dune"})


def test_event_type_defaults_to_view_and_integer_ids_become_strings() -> None:
    e = parse_json('{"user_id": 7, "item_id": 42, "ts": 1700000000}')
    assert (e.user_id, e.item_id, e.event) == ("7", "42", "view")


def test_ids_are_stripped() -> None:
    e = validate({"user_id": "  u1 ", "item_id": "i1\n", "ts": 1})
    assert (e.user_id, e.item_id) == ("u1", "i1")


def test_to_json_round_trips() -> None:
    e = Event("u1", "i9", "click", 1700000000.0, "books", {"title": "Dune"})
    assert parse_json(e.to_json()) == e
    plain = Event("u1", "i9", "view", 1.0)
    assert json.loads(plain.to_json()) == {"user_id": "u1", "item_id": "i9", "event": "view",
                                           "ts": 1.0}


def test_csv_row_parses_with_category_and_title_as_metadata() -> None:
    e = parse(b"u1,i2,click,1700000000,books,\"Dune, part 1\"", "csv")
    assert e == Event("u1", "i2", "click", 1700000000.0, "books", {"title": "Dune, part 1"})


def test_csv_row_with_only_the_required_columns_parses() -> None:
    e = parse("u1,i2,view,1700000000\r\n", "csv")
    assert e == Event("u1", "i2", "view", 1700000000.0)


def test_movielens_tsv_with_rating_uses_the_fourth_column_as_time() -> None:
    e = parse(b"196\t242\t3\t881250949\n", "tsv")
    assert e == Event("196", "242", "view", 881250949.0)


def test_tsv_with_user_item_time_parses() -> None:
    e = parse(b"196\t242\t881250949", "tsv")
    assert (e.user_id, e.item_id, e.ts) == ("196", "242", 881250949.0)


def test_iso_timestamps_are_accepted() -> None:
    assert parse_ts("2024-01-01T00:00:00Z") == 1704067200.0
    assert parse_ts("2024-01-01T01:00:00+01:00") == 1704067200.0


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process runs in a timezone far from UTC (as a laptop might)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_iso_timestamp_without_offset_is_utc_whatever_the_host_timezone() -> None:
    assert parse_ts("2024-01-01T00:00:00") == 1704067200.0
    assert parse_ts("2024-01-01") == 1704067200.0


def test_numeric_string_timestamps_are_accepted() -> None:
    assert parse_ts("1700000000.25") == 1700000000.25


def test_millisecond_timestamps_are_normalised_to_seconds() -> None:
    assert parse_ts(1700000000123) == pytest.approx(1700000000.123)
    assert validate({"user_id": "u", "item_id": "i", "ts": "1700000000000"}).ts == 1700000000.0


def test_times_after_the_year_9999_are_rejected() -> None:
    assert parse_ts(253402300799000) == 253402300799.0  # milliseconds, the last second
    with pytest.raises(EventError, match="after the year 9999"):
        parse_ts(253402300800000)
    with pytest.raises(EventError, match="after the year 9999"):
        parse_ts(2**80)


@pytest.mark.parametrize(("raw", "reason"), MALFORMED_JSON)
def test_malformed_json_events_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventError) as info:
        parse(raw, "jsonl")
    assert reason in str(info.value)


def test_ids_longer_than_256_characters_are_rejected() -> None:
    validate({"user_id": "u" * 256, "item_id": "i", "ts": 1})  # the limit itself is fine
    with pytest.raises(EventError, match="user_id is longer than 256 characters"):
        validate({"user_id": "u" * 257, "item_id": "i", "ts": 1})
    with pytest.raises(EventError, match="item_id is longer than 256 characters"):
        validate({"user_id": "u", "item_id": "i" * 257, "ts": 1})


def test_too_long_event_type_is_rejected() -> None:
    with pytest.raises(EventError, match="at most 64 characters"):
        validate({"user_id": "u", "item_id": "i", "ts": 1, "event": "x" * 65})


@pytest.mark.parametrize(("raw", "fmt", "reason"), [
    (b"196\t242", "tsv", "TSV row needs user, item and timestamp, got 2 columns"),
    (b"196\t\t881250949", "tsv", "item_id is empty"),
    (b"196\t242\t3\tlater", "tsv", "is not a number or ISO-8601"),
    (b"u1,i1,view", "csv", "CSV row needs user_id,item_id,event,ts, got 3 columns"),
    (b"u1,i1,view,-1", "csv", "not a finite, non-negative"),
    (b",i1,view,1", "csv", "user_id is empty"),
])
def test_malformed_delimited_rows_are_rejected_with_a_reason(raw: bytes, fmt: str,
                                                             reason: str) -> None:
    with pytest.raises(EventError) as info:
        parse(raw, fmt)
    assert reason in str(info.value)


def test_csv_header_is_recognised_even_after_a_byte_order_mark() -> None:
    assert is_csv_header(b"user_id,item_id,event,ts\n")
    assert is_csv_header("\ufeffuser_id,item_id,event,ts")
    assert not is_csv_header(b"u1,i1,view,1")


@pytest.mark.parametrize(("path", "fmt"), [
    ("events.jsonl", "jsonl"), ("EVENTS.CSV", "csv"), ("u.data", "tsv"), ("ratings.tsv", "tsv"),
    ("something", "jsonl"),
])
def test_format_follows_the_file_extension(path: str, fmt: str) -> None:
    assert format_for_path(path) == fmt
    assert format_for_path(path, "csv") == "csv"  # a configured format wins


def test_batch_collects_columns_weights_and_item_info() -> None:
    events = [Event("u1", "i1", "view", 10.0, "books", {"title": "Dune"}),
              Event("u2", "i2", "purchase", 11.0),
              Event("u1", "i3", "zap", 12.0, "films")]
    batch = EventBatch.from_events(events)
    assert len(batch) == 3
    assert batch.users == ["u1", "u2", "u1"]
    assert batch.items == ["i1", "i2", "i3"]
    np.testing.assert_array_equal(batch.ts, [10.0, 11.0, 12.0])
    assert batch.item_info == {"i1": {"title": "Dune", "category": "books"},
                               "i3": {"category": "films"}}
    weights = batch.weights({"view": 1.0, "purchase": 3.0})
    np.testing.assert_array_equal(weights, [1.0, 3.0, 1.0])  # unknown types weigh 1
    assert weights.dtype == np.float32


def test_nan_never_passes_as_a_time() -> None:
    with pytest.raises(EventError):
        parse_ts(math.nan)
