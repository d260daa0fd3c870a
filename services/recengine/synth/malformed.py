"""Malformed lines: how a broken producer's line looks in jsonl and csv."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",  # a truncated JSON object
    "not_an_object",  # valid JSON, but an array / number / string instead of an object
    "missing_user_id",
    "empty_item_id",
    "list_user_id",  # user_id is a JSON array
    "long_id",  # user_id or item_id longer than MAX_ID_LENGTH
    "nonnumeric_ts",  # ts is a non-numeric string or null
    "negative_ts",
    "bad_event_type",  # event is a number or null (unknown *strings* are valid)
)
"""Kinds of malformed lines, drawn uniformly."""

MAX_ID_LENGTH = 256
"""Longest valid user_id / item_id; malformed ``long_id`` lines exceed it."""

@dataclass(frozen=True)
class MalformedRecord:
    """A malformed record: its kind, the valid event it was derived from, a random draw."""

    kind: str
    base: dict[str, Any]
    u: float


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
dumps = _ENCODER.encode


def _long_id(prefix: str, u: float) -> str:
    return prefix + "x" * (MAX_ID_LENGTH + 1 + int(u * 700))


def malformed_json(rec: MalformedRecord) -> str:
    """The raw text of a malformed jsonl line; it is invalid per the event schema."""
    base = {k: rec.base[k] for k in ("user_id", "item_id", "event", "ts")}
    kind, u = rec.kind, rec.u
    if kind == "invalid_json":
        text = dumps(base)
        if u < 0.2:  # single quotes, as a Python repr would produce
            return repr(base)
        return text[: 1 + int(u * (len(text) - 2))]  # a prefix without the closing brace
    if kind == "not_an_object":
        options: list[Any] = [
            [base["user_id"], base["item_id"], base["event"], base["ts"]],
            base["ts"],
            f"{base['user_id']} {base['item_id']}",
            None,
        ]
        return dumps(options[int(u * len(options))])
    bad = dict(base)
    if kind == "missing_user_id":
        del bad["user_id"]
    elif kind == "empty_item_id":
        bad["item_id"] = "" if u < 0.5 else None
    elif kind == "list_user_id":
        bad["user_id"] = [base["user_id"]]
    elif kind == "long_id":
        key = "user_id" if u < 0.5 else "item_id"
        bad[key] = _long_id(base[key], u)
    elif kind == "nonnumeric_ts":
        bad["ts"] = ["not-a-time", "", "yesterday", None][int(u * 4)]
    elif kind == "negative_ts":
        bad["ts"] = -base["ts"] if u < 0.5 else -1.0
    elif kind == "bad_event_type":
        bad["event"] = 42 if u < 0.5 else None
    else:  # pragma: no cover - MALFORMED_KINDS is closed
        raise AssertionError(kind)
    return dumps(bad)


def malformed_csv(rec: MalformedRecord) -> list[str]:
    """A malformed csv row: bad ts, empty/over-long ids or a wrong number of columns."""
    b = rec.base
    row = [b["user_id"], b["item_id"], b["event"], repr(b["ts"]), b.get("category", ""), ""]
    kind, u = rec.kind, rec.u
    if kind in ("invalid_json", "not_an_object"):
        return row[: 1 + int(u * 3)]  # 1 to 3 columns instead of 6
    if kind in ("missing_user_id", "list_user_id"):
        row[0] = ""
    elif kind == "empty_item_id":
        row[1] = ""
    elif kind == "long_id":
        i = 0 if u < 0.5 else 1
        row[i] = _long_id(row[i], u)
    elif kind in ("nonnumeric_ts", "bad_event_type"):
        row[3] = ["not-a-time", "", "yesterday", "NaN"][int(u * 4)]
    elif kind == "negative_ts":
        row[3] = repr(-b["ts"])
    return row
