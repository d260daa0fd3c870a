"""The interaction event: schema, parsing (JSON lines, CSV, TSV) and validation.

A valid event is ``{"user_id": str, "item_id": str, "event": str, "ts": float | ISO-8601}``
with optional ``category`` (str) and ``metadata`` (object) describing the item. ``event``
defaults to ``view`` when absent (MovieLens-style TSV has none). Anything else is rejected with
a reason and goes to the dead-letter sink; it is never fatal.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Annotated

import msgspec
import numpy as np

MAX_ID_LENGTH = 256
MAX_TYPE_LENGTH = 64
#: 9999-12-31T23:59:59Z. A later time (even read as milliseconds) is garbage, and one such
#: event would decay every time-weighted count to nothing.
MAX_TS = 253402300799.0
CSV_COLUMNS = ("user_id", "item_id", "event", "ts", "category", "title")


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


def _check_id(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(f"{name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise EventError(f"{name} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise EventError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return text


def parse_ts(value: object) -> float:
    """Epoch seconds from a number, a numeric string or an ISO-8601 string."""
    if isinstance(value, bool):
        raise EventError("ts must be a number or an ISO-8601 time")
    if isinstance(value, int | float):
        ts = float(value)
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
    else:
        raise EventError("ts is missing" if value is None else "ts must be a number")
    if not math.isfinite(ts) or ts < 0:
        raise EventError(f"ts {ts!r} is not a finite, non-negative epoch time")
    if ts > 1e11:  # milliseconds by mistake are a common producer bug; accept them
        ts /= 1000.0
    if ts > MAX_TS:
        raise EventError(f"ts {ts!r} is after the year 9999")
    return ts


def validate(record: object) -> Event:
    """A validated :class:`Event` from a decoded record, or :class:`EventError` with the reason."""
    if not isinstance(record, dict):
        raise EventError(f"event must be a JSON object, got {type(record).__name__}")
    user = _check_id("user_id", record.get("user_id"))
    item = _check_id("item_id", record.get("item_id"))
    kind = record.get("event", "view")
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_TYPE_LENGTH:
        raise EventError("event must be a non-empty string of at most 64 characters")
    ts = parse_ts(record.get("ts"))
    category = record.get("category")
    if category is not None:
        if not isinstance(category, str) or len(category) > MAX_ID_LENGTH:
            raise EventError("category must be a string of at most 256 characters")
        category = category or None
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise EventError("metadata must be a JSON object")
    return Event(user, item, kind.strip(), ts, category, metadata or None)


def parse_json(raw: bytes | str) -> Event:
    """Decode and validate one JSON line."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"invalid JSON: {exc}") from None
    return validate(record)


def parse_delimited(raw: bytes | str, fmt: str) -> Event:
    """Decode and validate one CSV row (``CSV_COLUMNS``) or TSV row (``user item ts``)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    if fmt == "tsv":
        cols = text.split("\t")
        if len(cols) < 3:
            raise EventError(f"TSV row needs user, item and timestamp, got {len(cols)} columns")
        record: dict = {"user_id": cols[0], "item_id": cols[1], "ts": cols[-1]}
        if len(cols) >= 4:  # MovieLens: user item rating ts
            record = {"user_id": cols[0], "item_id": cols[1], "ts": cols[3]}
        return validate(record)
    row = next(csv.reader(io.StringIO(text)), [])
    if len(row) < 4:
        raise EventError(f"CSV row needs user_id,item_id,event,ts, got {len(row)} columns")
    record = dict(zip(CSV_COLUMNS, row, strict=False))
    meta = {"title": record.pop("title")} if record.get("title") else None
    if not record.get("category"):
        record.pop("category", None)
    record["metadata"] = meta
    return validate(record)


def parse(raw: bytes | str, fmt: str) -> Event:
    """Decode and validate one record of the given format (``jsonl``, ``csv`` or ``tsv``)."""
    if fmt == "jsonl":
        return parse_json(raw)
    return parse_delimited(raw, fmt)


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


@dataclass
class EventBatch:
    """Validated events as columns, the unit the trainer learns from.

    ``categories`` and ``metadata`` (optional, per event) keep what each event carried, so a
    batch is also a read-only sequence of :class:`Event` (``batch[n]``, ``for e in batch``).
    """

    users: list[str]
    items: list[str]
    kinds: list[str]
    ts: np.ndarray
    item_info: dict[str, dict] = field(default_factory=dict)
    categories: list[str | None] | None = None
    metadata: list[dict | None] | None = None

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, n: int) -> Event:
        cat = self.categories[n] if self.categories is not None else None
        meta = self.metadata[n] if self.metadata is not None else None
        return Event(self.users[n], self.items[n], self.kinds[n], float(self.ts[n]), cat, meta)

    def __iter__(self) -> Iterator[Event]:
        return (self[n] for n in range(len(self)))

    @classmethod
    def from_events(cls, events: Sequence[Event] | EventBatch) -> EventBatch:
        """Columns of events; a batch (as :func:`decode_jsonl` makes) is returned as it is."""
        if isinstance(events, EventBatch):
            return events
        info: dict[str, dict] = {}
        for e in events:
            if e.category is not None or e.metadata:
                doc = dict(e.metadata or {})
                if e.category is not None:
                    doc["category"] = e.category
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


class _Wire(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """What the fast path accepts: a JSON object whose event fields have the right JSON types
    (the last of duplicate keys wins, as ``json.loads``). A line it refuses is not rejected:
    it takes the exact path, :func:`parse_json`, which gives the reason (or accepts it, e.g. a
    time written as an ISO-8601 string, or a line with fields the event does not have).
    Unknown fields are refused, not skipped, because msgspec skips a value without checking
    its UTF-8, where ``json.loads`` rejects the line."""

    user_id: str | int
    item_id: str | int
    ts: float
    event: Annotated[str, msgspec.Meta(max_length=MAX_TYPE_LENGTH)] = "view"
    category: Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)] | None = None
    metadata: dict | None = None


_WIRE = msgspec.json.Decoder(_Wire)
#: Stands in for a line the fast path refused, so the column passes can run over every row.
_FILLER = _Wire("-", "-", 0.0)
_GET = {name: operator.attrgetter(name) for name in _Wire.__struct_fields__}


def _id_column(col: list, slow: np.ndarray) -> list[str]:
    """Stripped string ids of a column (integers become strings); rows whose id is empty or
    too long once stripped are marked slow (the exact validator decides them)."""
    try:
        out = list(map(str.strip, col))
    except TypeError:  # integer ids
        out = list(map(str.strip, map(str, col)))
    if "" in out or max(map(len, out), default=0) > MAX_ID_LENGTH:
        lengths = np.fromiter(map(len, out), dtype=np.int64, count=len(out))
        slow |= (lengths == 0) | (lengths > MAX_ID_LENGTH)
    return out


#: Lines decoded per column pass: the parsed objects of one chunk stay in the CPU caches.
DECODE_CHUNK = 2048


def decode_jsonl(raws: Sequence[bytes | str]) -> tuple[EventBatch, list[Rejected]]:
    """Decode and validate JSON lines straight into a batch's columns.

    The same events, values and reject reasons as :func:`parse_json` per line, without a dict
    or an :class:`Event` per line: msgspec decodes each line into a small typed struct (one C
    call that also checks the JSON types), the rest of the schema is checked a column at a
    time, and only a line that fails a check goes through :func:`parse_json`, which decides it
    exactly. Each line is decoded on its own, so one line can never borrow or lend text to
    another (a stream decoder would read ``{"a":`` and ``1}`` on two lines as one value).
    """
    if len(raws) <= DECODE_CHUNK:
        return _decode_chunk(raws, 0)
    parts = [_decode_chunk(raws[a:a + DECODE_CHUNK], a) for a in range(0, len(raws), DECODE_CHUNK)]
    batch = parts[0][0]
    for b, _ in parts[1:]:  # lists grow in place: C-level extends
        batch.users += b.users
        batch.items += b.items
        batch.kinds += b.kinds
        batch.categories += b.categories  # type: ignore[operator]
        batch.metadata += b.metadata  # type: ignore[operator]
        batch.item_info.update(b.item_info)
    batch.ts = np.concatenate([b.ts for b, _ in parts])
    return batch, [r for _, rejected in parts for r in rejected]


def _decode_chunk(raws: Sequence[bytes | str], base: int) -> tuple[EventBatch, list[Rejected]]:
    """:func:`decode_jsonl` of ``raws``, which start at position ``base`` of the polled batch."""
    n = len(raws)
    wires: list[_Wire] = []
    refused: list[int] = []
    lines = iter(raws)
    while True:  # a C-level loop, resumed after each refused line
        try:
            wires.extend(map(_WIRE.decode, lines))
            break
        # ValidationError included; an unknown key that is not UTF-8 fails as it is named.
        except (msgspec.DecodeError, UnicodeDecodeError):  # the line was consumed
            refused.append(len(wires))
            wires.append(_FILLER)
    slow = np.zeros(n, dtype=bool)
    slow[refused] = True
    users = _id_column(list(map(_GET["user_id"], wires)), slow)
    items = _id_column(list(map(_GET["item_id"], wires)), slow)

    kinds = list(map(_GET["event"], wires))
    stripped = {k: k.strip() for k in set(kinds)}  # a handful of distinct types
    if not all(stripped.values()):
        empty = {k for k, s in stripped.items() if not s}
        slow |= np.fromiter(map(empty.__contains__, kinds), dtype=bool, count=n)
    if any(k != s for k, s in stripped.items()):
        kinds = list(map(stripped.__getitem__, kinds))

    ts = np.fromiter(map(_GET["ts"], wires), dtype=np.float64, count=n)
    slow |= ~np.isfinite(ts) | (ts < 0)
    ts = np.where(ts > 1e11, ts / 1000.0, ts)  # milliseconds by mistake, as parse_ts
    slow |= ts > MAX_TS

    categories = list(map(_GET["category"], wires))
    metadata = list(map(_GET["metadata"], wires))
    described = np.flatnonzero(
        np.fromiter(map(operator.is_not, categories, repeat(None)), dtype=bool, count=n)
        | np.fromiter(map(operator.is_not, metadata, repeat(None)), dtype=bool, count=n)
    ).tolist()

    rejected: list[Rejected] = []
    slow_rows = np.flatnonzero(slow).tolist()
    for r in slow_rows:
        try:
            e = parse_json(raws[r])
        except EventError as exc:
            rejected.append(Rejected(raws[r], str(exc), base + r))  # type: ignore[arg-type]
            continue
        slow[r] = False
        users[r], items[r], kinds[r], ts[r] = e.user_id, e.item_id, e.event, e.ts
        categories[r], metadata[r] = e.category, e.metadata

    info: dict[str, dict] = {}
    if slow_rows:
        described = sorted({*described, *slow_rows})
    for r in described:  # in order: the last description of an item wins
        if slow[r]:
            continue
        cat = categories[r] = categories[r] or None  # "" and {} describe nothing
        meta = metadata[r] = metadata[r] or None
        if meta is not None:
            doc = dict(meta)
            if cat is not None:
                doc["category"] = cat
            info[items[r]] = doc
        elif cat is not None:
            info[items[r]] = {"category": cat}
    if rejected:  # a few rows: delete them in place, last first
        for r in reversed(slow_rows):
            if slow[r]:
                del users[r], items[r], kinds[r], categories[r], metadata[r]
        ts = ts[~slow]
    return EventBatch(users, items, kinds, ts, info, categories, metadata), rejected


def concat(batches: Iterable[EventBatch]) -> EventBatch:
    """One batch from several."""
    bs = list(batches)
    info: dict[str, dict] = {}
    for b in bs:
        info.update(b.item_info)
    return EventBatch(
        users=[u for b in bs for u in b.users],
        items=[i for b in bs for i in b.items],
        kinds=[k for b in bs for k in b.kinds],
        ts=np.concatenate([b.ts for b in bs]) if bs else np.zeros(0),
        item_info=info,
        categories=([c for b in bs for c in b.categories]  # type: ignore[union-attr]
                    if all(b.categories is not None for b in bs) else None),
        metadata=([m for b in bs for m in b.metadata]  # type: ignore[union-attr]
                  if all(b.metadata is not None for b in bs) else None),
    )
