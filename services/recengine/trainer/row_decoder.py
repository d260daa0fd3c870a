"""JSON event lines straight to the learner's rows, in one compiled pass.

Parsing lines into Python objects and mapping their id strings to rows (a struct per line,
two id strings, their dictionary lookups, the column passes) was a third of the trainer's time
at a few hundred thousand events a second. :class:`RowDecoder` scans the bytes of a polled
batch instead (:func:`recengine.trainer.json_scanner.scan`, compiled with numba) and produces
what the learner consumes, a :class:`RowBatch` of user rows, item rows, weights and times,
with the same events, values, reasons and item descriptions as the exact parser.

**The scanner accepts only what it can decide exactly** and leaves every other line to
:func:`recengine.events.parse_json` (the exact parser, which gives the reject reason or
accepts the line): a line is taken when it is one JSON object, with optional whitespace,
holding only the event's keys, each at most once, with

- ``user_id`` / ``item_id``: a string of ASCII without escapes or control bytes, not empty,
  at most 256 characters, no space at either end (so ``str.strip`` would not change it); or a
  non-negative JSON integer (its digits are the id, as ``str(int)`` writes it);
- ``ts``: a non-negative JSON number without exponent whose digits fit in 2**53 with at most
  22 decimals: then ``digits / 10**decimals`` is one correctly rounded IEEE division of two
  exact doubles, which is what ``float()`` of the text gives (Clinger's fast path);
- ``event`` (optional, default ``view``), ``category`` (string or null), as for ids but at most
  64 and 256 characters; ``metadata``: null or a JSON object.

Ids resolve through :class:`~recengine.trainer.id_index.IdIndex` (hash tables over the
vocabularies' bytes); only an id new to the vocabulary becomes a Python string, once per batch
however often it recurs, and it gets its row from the vocabulary in the same order of first
appearance as on the string path. Lines polled from a file arrive as
:class:`~recengine.sources.Lines` (one buffer and line offsets), which the scanner reads in
place; other sources' lines are joined into one buffer first.

**Item descriptions** (``category`` and ``metadata``) repeat on most events. The learner merges
a batch's last description of each item into what it knows; a description whose bytes equal
the ones this decoder last handed over for that item would change nothing, so the scanner
compares bytes and only a description that differs is decoded (msgspec, which also validates
the metadata object: one it refuses goes to the exact parser). The bytes kept per item are the
last description handed over, so a :class:`RowBatch` must be learned once decoded (the
trainer, ``recengine eval`` and the bench always do).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from recengine.events import (
    DEFAULT_LIMITS,
    EventError,
    Limits,
    Rejected,
    description,
    nesting_depth,
    parse_json,
)
from recengine.sources import Lines
from recengine.trainer.id_index import IdIndex
from recengine.trainer.json_scanner import (
    CAT,
    FAST,
    ITEM,
    KIND,
    META,
    NEW,
    NEW_ID,
    NONE,
    REJECTED,
    SLOW,
    UNKNOWN,
    USER,
    KnownDescriptions,
    Lookups,
    NewIds,
    Scanned,
    scan,
)
from recengine.vocab import Vocabulary


@dataclass
class RowBatch:
    """One micro-batch as the learner consumes it: rows in the learner's vocabularies."""

    users: np.ndarray  # int64 user rows
    items: np.ndarray  # int64 item rows
    weights: np.ndarray  # float32 per event, from its type
    ts: np.ndarray  # float64 epoch seconds
    items_before: int  # the item vocabulary's size before this batch (newer rows are new items)
    item_info: dict[int, dict] = field(default_factory=dict)
    """Per item row, its last description in the batch, in order of first description."""

    def __len__(self) -> int:
        return len(self.users)


#: A JSON escape of a UTF-16 surrogate: a lone one is not Unicode (the exact parser decides).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Descriptions:
    """Per item row, the bytes (category, metadata) of the description last handed over."""

    def __init__(self) -> None:
        self.at = np.full(1024, -1, dtype=np.int64)  # offset in the arena, -1: none kept
        self.cat = np.full(1024, -1, dtype=np.int64)  # lengths, -1: absent
        self.meta = np.full(1024, -1, dtype=np.int64)
        self.arena = np.zeros(1 << 16, dtype=np.uint8)
        self.used = 0

    def ensure(self, n_items: int) -> None:
        if n_items > len(self.at):
            size = max(n_items, 2 * len(self.at))
            for name in ("at", "cat", "meta"):
                old = getattr(self, name)
                grown = np.full(size, -1, dtype=np.int64)
                grown[: len(old)] = old
                setattr(self, name, grown)

    def forget(self, rows: np.ndarray) -> None:
        self.at[rows] = -1

    def keep(self, rows: np.ndarray, spans: np.ndarray, data: bytes) -> None:
        """Keep the description bytes ``data[spans[r, 0]:spans[r, 1]]`` (category) and
        ``data[spans[r, 2]:spans[r, 3]]`` (metadata; -1: absent) for item ``rows[r]``."""
        present = spans[:, 0::2] >= 0
        lengths = np.where(present, spans[:, 1::2] - spans[:, 0::2], -1)
        pieces = []
        for cat_a, cat_b, meta_a, meta_b in spans.tolist():
            if cat_a >= 0:
                pieces.append(data[cat_a:cat_b])
            if meta_a >= 0:
                pieces.append(data[meta_a:meta_b])
        blob = b"".join(pieces)
        if self.used + len(blob) > len(self.arena):
            self._make_room(len(blob))
        self.arena[self.used: self.used + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
        sizes = np.maximum(lengths, 0).sum(axis=1)
        self.at[rows] = self.used + np.cumsum(sizes) - sizes
        self.cat[rows] = lengths[:, 0]
        self.meta[rows] = lengths[:, 1]
        self.used += len(blob)

    def _make_room(self, need: int) -> None:
        """Compact the arena (replaced descriptions leave garbage), growing it when the live
        ones fill more than half of it."""
        live = np.flatnonzero(self.at >= 0)
        lengths = np.maximum(self.cat[live], 0) + np.maximum(self.meta[live], 0)
        total = int(lengths.sum())
        size = len(self.arena)
        while 2 * (total + need) > size:
            size *= 2
        arena = np.zeros(size, dtype=np.uint8)
        starts = self.at[live]
        new_at = np.cumsum(lengths) - lengths
        if total:
            take = np.repeat(starts - new_at, lengths) + np.arange(total)
            arena[:total] = self.arena[take]
        self.at[live] = new_at
        self.arena = arena
        self.used = total


_METADATA = msgspec.json.Decoder(dict)


def _resolve(vocab: Vocabulary, rows: np.ndarray, status: np.ndarray, spans: np.ndarray,
             col: int, data: bytes, events: dict, attr: str) -> np.ndarray:
    """Vocabulary rows for a column of the scanner's ``rows``. Ids new to the vocabulary
    (``NEW_ID - m``) need one key each, taken from their first line; an unresolved id
    (``UNKNOWN``: a type the scanner does not know, or a line the exact parser took) needs one
    per line. The keys go to the vocabulary in line order, so new rows follow first
    appearance exactly as on the string path."""
    new = (rows <= NEW_ID) & (status == FAST)
    lines = np.flatnonzero(new)
    numbers = NEW_ID - rows[lines]
    uniq, first = np.unique(numbers, return_index=True)
    keyed = lines[first]  # the first line of each new id
    unresolved = np.flatnonzero((rows == UNKNOWN) & (status != REJECTED))
    if len(unresolved):
        keyed = np.concatenate([keyed, unresolved])
    out = rows.copy()
    if not len(keyed):
        return out
    order = np.argsort(keyed, kind="stable")
    ordered = keyed[order].tolist()
    starts = spans[ordered, col].tolist()
    stops = spans[ordered, col + 1].tolist()
    keys = [data[a:b].decode() for a, b in zip(starts, stops, strict=True)]
    if events:  # the exact parser's lines carry their decoded id
        for q, r in enumerate(ordered):
            e = events.get(r)
            if e is not None:
                keys[q] = getattr(e, attr)
    got = np.empty(len(keyed), dtype=np.int64)
    got[order] = vocab.add(keys)
    if len(uniq):
        number_rows = np.empty(int(uniq[-1]) + 1, dtype=np.int64)
        number_rows[uniq] = got[: len(uniq)]
        out[lines] = number_rows[numbers]
    out[unresolved] = got[len(uniq):]
    return out


class RowDecoder:
    """Decodes JSON event lines into :class:`RowBatch` es for one learner's vocabularies."""

    def __init__(self, users: Vocabulary, items: Vocabulary, weights: dict[str, float],
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.users, self.items = users, items
        self.limits = limits
        self.kinds = Vocabulary(["view"])  # row 0 is the default type
        self._weights_table = weights
        self._kind_weights = np.zeros(0, dtype=np.float32)
        self._indexes = (IdIndex(users), IdIndex(items), IdIndex(self.kinds))
        self._desc = _Descriptions()

    def forget(self, rows: Iterable[int]) -> None:
        """Items described by another path: their next description here is decoded again."""
        self._desc.ensure(len(self.items))
        self._desc.forget(np.fromiter(rows, dtype=np.int64))

    def decode(self, raws: Sequence[bytes], data: bytes | None = None
               ) -> tuple[RowBatch, list[Rejected]]:
        """Validate JSON lines and map them to rows; the rejects carry their reasons and their
        positions in ``raws``. New ids get rows in the vocabularies. The scanner reads
        :class:`~recengine.sources.Lines` in place; other lines are joined first (``data`` is
        ``b"".join(raws)`` when the caller has it)."""
        n = len(raws)
        if isinstance(raws, Lines):
            data, starts, ends = raws.data, raws.starts, raws.ends
        else:
            if data is None:
                data = b"".join(raws)
            bounds = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.fromiter(map(len, raws), dtype=np.int64, count=n), out=bounds[1:])
            starts, ends = bounds[:-1], bounds[1:]
        buf = np.frombuffer(data, dtype=np.uint8)
        for index in self._indexes:
            index.sync()
        u_ix, i_ix, k_ix = self._indexes
        d = self._desc
        d.ensure(len(self.items))
        out = Scanned.for_lines(n)
        scan(buf, starts, ends, Lookups(u_ix.arrays, i_ix.arrays, k_ix.arrays),
             KnownDescriptions(d.at, d.cat, d.meta, d.arena), NewIds.for_lines(n), out)
        status, rows, spans, ts, desc = out
        # The limits the scanner does not know (a line's size, the wall clock): a line past
        # them goes to the exact parser, which rejects it with its reason.
        limits = self.limits
        past = (status == FAST) & (((ends - starts) > limits.max_bytes)
                                   | (ts > limits.max_ts()))
        if past.any():
            status[past], desc[past] = SLOW, NONE
            rows[past] = UNKNOWN

        # New descriptions: decode them (which validates the metadata object); one nested too
        # deep (or refused) goes to the exact parser.
        docs: dict[int, dict] = {}
        for r in np.flatnonzero(desc == NEW).tolist():
            ca, cb, ma, mb = spans[r, CAT:META + 2].tolist()
            try:
                if ma >= 0 and (nesting_depth(data[ma:mb]) >= limits.max_depth
                                or _SURROGATE.search(data, ma, mb)):
                    raise ValueError("nested too deep, or a surrogate escape")
                meta = _METADATA.decode(data[ma:mb]) if ma >= 0 else None
            except (msgspec.DecodeError, ValueError, RecursionError):
                status[r], desc[r] = SLOW, NONE
                rows[r] = UNKNOWN
                continue
            docs[r] = description(data[ca:cb].decode() if ca >= 0 else None, meta)

        # Lines the scanner did not take: the exact parser decides them.
        rejected: list[Rejected] = []
        events = {}
        for r in np.flatnonzero(status == SLOW).tolist():
            try:
                e = events[r] = parse_json(raws[r], limits)
            except EventError as exc:
                rejected.append(Rejected(raws[r], str(exc), r))
                status[r] = REJECTED
                continue
            ts[r] = e.ts
            doc = description(e.category, e.metadata)
            if doc is not None:
                desc[r] = NEW
                docs[r] = doc

        users = _resolve(self.users, rows[:, 0], status, spans, USER, data, events, "user_id")
        items_before = len(self.items)
        items = _resolve(self.items, rows[:, 1], status, spans, ITEM, data, events, "item_id")
        kinds = _resolve(self.kinds, rows[:, 2], status, spans, KIND, data, events, "event")
        if len(self._kind_weights) < len(self.kinds):
            get = self._weights_table.get
            self._kind_weights = np.array([get(k, 1.0) for k in self.kinds.ids],
                                          dtype=np.float32)
        info = self._item_info(items, desc, status, docs, spans, data)
        weights = self._kind_weights[kinds]
        if rejected:
            keep = status != REJECTED
            users, items, weights, ts = users[keep], items[keep], weights[keep], ts[keep]
        return RowBatch(users, items, weights, ts, items_before, info), rejected

    def _item_info(self, items: np.ndarray, desc: np.ndarray, status: np.ndarray,
                   docs: dict[int, dict], spans: np.ndarray, data: bytes) -> dict[int, dict]:
        """Each item's last description in the batch, in order of its first one, for the items
        whose last description is new (a repeated one changes nothing)."""
        lines = np.flatnonzero((desc != NONE) & (status != REJECTED))
        if not len(lines):
            return {}
        described = items[lines]
        uniq, first = np.unique(described, return_index=True)
        _, from_end = np.unique(described[::-1], return_index=True)
        last = lines[len(lines) - 1 - from_end]
        new = desc[last] == NEW
        order = np.argsort(first[new], kind="stable")
        rows = uniq[new][order]
        lasts = last[new][order]
        info = {row: docs[r] for row, r in zip(rows.tolist(), lasts.tolist(), strict=True)}
        d = self._desc
        d.ensure(len(self.items))
        fast = status[lasts] == FAST
        d.keep(rows[fast], spans[lasts[fast], CAT:META + 2], data)
        # An exact parser's description has no canonical bytes: the next one is decoded again.
        d.forget(rows[~fast])
        return info
