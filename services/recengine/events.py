"""The interaction event: schema, parsing (JSON lines, CSV, TSV) and validation.

A valid event is ``{"user_id": str, "item_id": str, "event": str, "ts": float | ISO-8601}``
with optional ``category`` (str) and ``metadata`` (object) describing the item. ``event``
defaults to ``view`` when absent (MovieLens-style TSV has none). Anything else is rejected with
a reason and goes to the dead-letter sink; it is never fatal: :func:`parse` and
:func:`validate` raise :class:`EventError` and nothing else, whatever the record holds. Size and
nesting are bounded before a record is decoded, and times too far in the future are refused
(:class:`Limits`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recengine.config import Settings

MAX_ID_LENGTH = 256
MAX_TYPE_LENGTH = 64
#: 9999-12-31T23:59:59Z. A later time (even read as milliseconds) is garbage, and one such
#: event would decay every time-weighted count to nothing.
MAX_TS = 253402300799.0
CSV_COLUMNS = ("user_id", "item_id", "event", "ts", "category", "title")
#: A JSON string (its escapes included), removed before nesting is counted.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


@dataclass(frozen=True, slots=True)
class Limits:
    """What a record may be, checked before it is decoded (size, nesting) and after (time).

    A line that would need megabytes of memory or thousands of stack frames to decode is
    refused before the decoder sees it; a time further in the future than ``future_skew_s``
    (relative to the wall clock when the event is validated) is nonsense from a broken
    producer clock, and is refused rather than learned. The defaults are the settings'
    (``event_max_bytes``, ``event_max_depth``, ``event_max_future_s``).
    """

    max_bytes: int = 65_536
    max_depth: int = 32
    future_skew_s: float = 3600.0

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits ``settings`` set."""
        return cls(settings.event_max_bytes, settings.event_max_depth,
                   settings.event_max_future_s)

    def max_ts(self) -> float:
        """The latest time accepted now (epoch seconds)."""
        return min(MAX_TS, time.time() + self.future_skew_s)

    def check_raw(self, raw: bytes | str) -> None:
        """EventError when a raw record is too large or nested too deep to decode."""
        size = len(raw)
        if size > self.max_bytes:
            raise EventError(f"record of {size} bytes is larger than {self.max_bytes}")
        depth = nesting_depth(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str)
                              else raw)
        if depth > self.max_depth:
            raise EventError(f"record nested {depth} deep, more than {self.max_depth}")


#: The settings' defaults, for callers without settings (tools, tests).
DEFAULT_LIMITS = Limits()


def nesting_depth(raw: bytes) -> int:
    """How deep JSON arrays and objects nest in ``raw`` (brackets inside strings do not
    count); in C-speed passes, without decoding, so a hostile line costs no stack."""
    if b"[" not in raw and b"{" not in raw:
        return 0
    if b'"' in raw:
        raw = _JSON_STRING.sub(b"", raw)
    steps = _OPEN[np.frombuffer(raw, dtype=np.uint8)]
    if not steps.any():
        return 0
    return int(np.cumsum(steps, dtype=np.int64).max())


def object_depth(value: object, limit: int) -> int:
    """How deep lists and dicts nest in a decoded value, counting no further than
    ``limit + 1`` (iteratively: a hostile value costs no stack)."""
    deepest = 0
    todo: list[tuple[object, int]] = [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict | list):
            d += 1
            deepest = max(deepest, d)
            if d > limit:
                return d
            todo.extend((x, d) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


class EventError(ValueError):
    """An event failed validation; the message is the reason recorded in the dead-letter sink."""


@dataclass(slots=True)
class Event:
    """One validated interaction."""

    user_id: str
    item_id: str
    event: str
    ts: float
    category: str | None = None
    metadata: dict | None = None

    def to_json(self) -> str:
        """The canonical JSON line (without newline)."""
        doc: dict = {"user_id": self.user_id, "item_id": self.item_id, "event": self.event,
                     "ts": self.ts}
        if self.category is not None:
            doc["category"] = self.category
        if self.metadata:
            doc["metadata"] = self.metadata
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Rejected:
    """A record that failed validation, with the original bytes untouched."""

    raw: bytes
    reason: str
    index: int = -1
    """Position of the record in the polled batch it came from (maps it to its offset)."""


def _unicode(name: str, text: str) -> str:
    """``text`` if it is valid Unicode: JSON's ``\\udcff`` escapes decode to lone surrogates,
    which no store, cache or UTF-8 file can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(f"{name} holds a lone surrogate (not valid Unicode)") from None
    return text


def _check_id(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(f"{name} must be a string, got {type(value).__name__}")
    text = _unicode(name, str(value).strip())
    if not text:
        raise EventError(f"{name} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise EventError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return text


def parse_ts(value: object, max_ts: float = MAX_TS) -> float:
    """Epoch seconds from a number, a numeric string or an ISO-8601 string, at most
    ``max_ts`` (see :meth:`Limits.max_ts`)."""
    if isinstance(value, bool):
        raise EventError("ts must be a number or an ISO-8601 time")
    iso = False
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:
            raise EventError("ts is too large a number") from None
    elif isinstance(value, str):
        try:
            ts = float(value)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise EventError(f"ts {value[:40]!r} is not a number or ISO-8601 time") from None
            # A time without an offset is UTC, never the host's local time.
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            ts = when.timestamp()
            iso = True
    else:
        raise EventError("ts is missing" if value is None else "ts must be a number")
    if not math.isfinite(ts) or ts < 0:
        raise EventError(f"ts {ts!r} is not a finite, non-negative epoch time")
    if ts > 1e11 and not iso:  # milliseconds by mistake, a common producer bug: accepted
        ts /= 1000.0
    if ts > MAX_TS:
        raise EventError(f"ts {ts!r} is after the year 9999")
    if ts > max_ts:
        raise EventError(f"ts {ts!r} is {ts - time.time():.0f} s in the future")
    return ts


def validate(record: object, limits: Limits = DEFAULT_LIMITS) -> Event:
    """A validated :class:`Event` from a decoded record, or :class:`EventError` with the reason.

    Never another exception: whatever a record holds, it is decided."""
    try:
        return _validate(record, limits)
    except EventError:
        raise
    except Exception as exc:  # a hostile value no rule foresaw: a reject, never a crash
        raise EventError(f"invalid event ({type(exc).__name__}: {str(exc)[:80]})") from None


def _validate(record: object, limits: Limits) -> Event:
    if not isinstance(record, dict):
        raise EventError(f"event must be a JSON object, got {type(record).__name__}")
    user = _check_id("user_id", record.get("user_id"))
    item = _check_id("item_id", record.get("item_id"))
    kind = record.get("event", "view")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_TYPE_LENGTH:
        raise EventError("event must be a non-empty string of at most 64 characters")
    _unicode("event", kind)
    ts = parse_ts(record.get("ts"), limits.max_ts())
    category = record.get("category")
    if category is not None:
        if not isinstance(category, str) or len(category) > MAX_ID_LENGTH:
            raise EventError("category must be a string of at most 256 characters")
        _unicode("category", category)
        category = category or None
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise EventError("metadata must be a JSON object")
    if metadata and object_depth(metadata, limits.max_depth - 1) > limits.max_depth - 1:
        raise EventError(f"metadata nests deeper than {limits.max_depth - 1}")
    if metadata:
        _unicode("metadata", json.dumps(metadata, ensure_ascii=False))
    return Event(user, item, kind.strip(), ts, category, metadata or None)


def parse_json(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Decode and validate one JSON line: an :class:`Event` or :class:`EventError`, whatever
    the line holds (size and nesting are checked before it is decoded)."""
    limits.check_raw(raw)
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"invalid JSON: {str(exc)[:120]}") from None
    except Exception as exc:  # RecursionError, MemoryError: refused, never fatal
        raise EventError(f"undecodable JSON ({type(exc).__name__})") from None
    return validate(record, limits)


def parse_delimited(raw: bytes | str, fmt: str, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Decode and validate one CSV row (``CSV_COLUMNS``) or TSV row (``user item ts``)."""
    if len(raw) > limits.max_bytes:
        raise EventError(f"record of {len(raw)} bytes is larger than {limits.max_bytes}")
    try:
        return _parse_delimited(raw, fmt, limits)
    except EventError:
        raise
    except Exception as exc:  # csv.Error (a NUL byte, a field too large) and the like
        raise EventError(f"invalid {fmt.upper()} row ({type(exc).__name__}: "
                         f"{str(exc)[:80]})") from None


def _parse_delimited(raw: bytes | str, fmt: str, limits: Limits) -> Event:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    if fmt == "tsv":
        cols = text.split("\t")
        if len(cols) < 3:
            raise EventError(f"TSV row needs user, item and timestamp, got {len(cols)} columns")
        record: dict = {"user_id": cols[0], "item_id": cols[1], "ts": cols[-1]}
        if len(cols) >= 4:  # MovieLens: user item rating ts
            record = {"user_id": cols[0], "item_id": cols[1], "ts": cols[3]}
        return validate(record, limits)
    row = next(csv.reader(io.StringIO(text)), [])
    if len(row) < 4:
        raise EventError(f"CSV row needs user_id,item_id,event,ts, got {len(row)} columns")
    record = dict(zip(CSV_COLUMNS, row, strict=False))
    meta = {"title": record.pop("title")} if record.get("title") else None
    if not record.get("category"):
        record.pop("category", None)
    record["metadata"] = meta
    return validate(record, limits)


def parse(raw: bytes | str, fmt: str, limits: Limits = DEFAULT_LIMITS) -> Event:
    """Decode and validate one record of the given format (``jsonl``, ``csv`` or ``tsv``)."""
    if fmt == "jsonl":
        return parse_json(raw, limits)
    return parse_delimited(raw, fmt, limits)


def is_csv_header(raw: bytes | str) -> bool:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.lstrip("\ufeff").startswith("user_id,")


def format_for_path(path: str, configured: str = "auto") -> str:
    """The stream format of a file: configured, else by extension (default JSON lines)."""
    if configured != "auto":
        return configured
    lower = path.lower()
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".dat", "tsv"), (".data", "tsv")):
        if lower.endswith(ext):
            return fmt
    return "jsonl"


def description(category: str | None, metadata: dict | None) -> dict | None:
    """What an event says about its item: its metadata and its category, or None."""
    if category is None and not metadata:
        return None
    doc = dict(metadata or {})
    if category is not None:
        doc["category"] = category
    return doc


@dataclass
class EventBatch:
    """Validated events as columns, which the learner maps to rows (``Learner.rows``).

    ``categories`` and ``metadata`` keep what each event carried, so a batch is also a
    read-only sequence of :class:`Event` (``batch[n]``, ``for e in batch``).
    """

    users: list[str]
    items: list[str]
    kinds: list[str]
    ts: np.ndarray
    categories: list[str | None]
    metadata: list[dict | None]
    item_info: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, n: int) -> Event:
        return Event(self.users[n], self.items[n], self.kinds[n], float(self.ts[n]),
                     self.categories[n], self.metadata[n])

    def __iter__(self) -> Iterator[Event]:
        return (self[n] for n in range(len(self)))

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> EventBatch:
        """Columns of events."""
        info: dict[str, dict] = {}
        for e in events:
            doc = description(e.category, e.metadata)
            if doc is not None:
                info[e.item_id] = doc
        return cls(
            users=[e.user_id for e in events],
            items=[e.item_id for e in events],
            kinds=[e.event for e in events],
            ts=np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events)),
            item_info=info,
            categories=[e.category for e in events],
            metadata=[e.metadata for e in events],
        )

    def weights(self, table: dict[str, float]) -> np.ndarray:
        """Per-event weights from the event-type table (unknown types weigh 1)."""
        return np.fromiter(map(table.get, self.kinds, repeat(1.0)), dtype=np.float32,
                           count=len(self.kinds))
