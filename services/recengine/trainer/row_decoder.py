"""JSON event lines straight to the learner's rows, in one compiled pass.

Parsing lines into Python objects and mapping their id strings to rows (a struct per line,
two id strings, their dictionary lookups, the column passes) was a third of the trainer's time
at a few hundred thousand events a second. :class:`RowDecoder` scans the bytes of a polled
batch instead (numba) and produces what the learner consumes, a :class:`RowBatch` of user
rows, item rows, weights and times, with the same events, values, reasons and item
descriptions as the exact parser.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
from numba import njit

from recengine.events import (
    MAX_ID_LENGTH,
    MAX_TS,
    MAX_TYPE_LENGTH,
    EventError,
    Rejected,
    description,
    parse_json,
)
from recengine.sources import Lines
from recengine.trainer.id_index import IdIndex, equal_bytes, fnv1a, probe
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


_KEYS = (b"user_id", b"item_id", b"event", b"ts", b"category", b"metadata")
_NAMES = np.frombuffer(b"".join(_KEYS), dtype=np.uint8)
_NAME_OFFSETS = np.cumsum([0, *map(len, _KEYS)]).astype(np.int64)
_POW10 = np.array([10.0 ** e for e in range(23)])  # all exact doubles
_MAX_MANTISSA = 2 ** 53

# Columns of the scanner's ``spans`` output: [start, stop) byte ranges in the joined buffer.
_USER, _ITEM, _KIND, _CAT, _META = 0, 2, 4, 6, 8
# ``status``: the scanner took the line / the exact parser decides it / rejected.
_FAST, _SLOW, _REJECTED = 0, 1, 2
# ``desc``: the line describes nothing / the same bytes as its item's last description / new.
_NONE, _SAME, _NEW = 0, 1, 2


@njit(inline="always")
def _ws(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and (buf[p] == 32 or buf[p] == 9 or buf[p] == 10 or buf[p] == 13):
        p += 1
    return p


@njit(inline="always")
def _plain_string_end(buf: np.ndarray, p: int, end: int) -> int:
    """From just after an opening quote, the index of the closing quote; -1 when the string
    holds an escape, a control byte or a non-ASCII byte (the exact parser decides those)."""
    while p < end:
        c = buf[p]
        if c == 34:
            return p
        if c == 92 or c < 32 or c >= 128:
            return -1
        p += 1
    return -1


@njit(inline="always")
def _trimmed(buf: np.ndarray, a: int, b: int, longest: int) -> bool:
    """A string that ``str.strip`` leaves as it is, not empty and at most ``longest`` long."""
    return b > a and b - a <= longest and buf[a] != 32 and buf[b - 1] != 32


@njit(inline="always")
def _key(buf: np.ndarray, a: int, b: int, names: np.ndarray, offsets: np.ndarray) -> int:
    """The index of the key ``buf[a:b]`` in ``_KEYS``, or -1. The event's keys differ in
    length or first byte, so one candidate is compared."""
    n = b - a
    if n == 0:
        return -1
    first = buf[a]
    k = -1
    for c in range(len(offsets) - 1):
        if offsets[c + 1] - offsets[c] == n and names[offsets[c]] == first:
            k = c
            break
    if k < 0:
        return -1
    s = offsets[k]
    j = 1
    while j < n and buf[a + j] == names[s + j]:
        j += 1
    return k if j == n else -1


@njit(inline="always")
def _object_end(buf: np.ndarray, p: int, end: int) -> int:
    """From an opening brace, the index after its matching brace (strings and escapes
    respected), or -1 (also when a bracket closes it). It does not validate what is inside:
    a new description is decoded (and so validated) before it is used, and a repeated one was
    validated when it was new."""
    depth = 0
    while p < end:
        c = buf[p]
        if c == 34:
            p += 1
            while p < end and buf[p] != 34:
                if buf[p] == 92:
                    p += 1
                p += 1
            if p >= end:
                return -1
        elif c == 123 or c == 91:
            depth += 1
        elif c == 125 or c == 93:
            depth -= 1
            if depth == 0:
                return p + 1 if c == 125 else -1
        p += 1
    return -1


@njit(inline="always")
def _is_null(buf: np.ndarray, p: int, end: int) -> bool:
    return (p + 4 <= end and buf[p] == 110 and buf[p + 1] == 117 and buf[p + 2] == 108
            and buf[p + 3] == 108)


@njit(inline="always")
def _same_bytes(buf: np.ndarray, a: int, b: int, stored: int, arena: np.ndarray,
                at: int) -> bool:
    """``buf[a:b]`` (a < 0: absent) equals the stored part of length ``stored`` (-1: absent)
    at ``arena[at:]``."""
    if a < 0 or stored < 0:
        return a < 0 and stored < 0
    return b - a == stored and equal_bytes(buf, a, arena, at, stored)


# ``_nrt=False``: the scanner allocates nothing, and without the runtime numba emits no
# reference counting for the arrays its inlined helpers take; with it, the increments and
# decrements left in the branches made the scan 2.5x slower (numba issue #2350).
@njit(cache=True, nogil=True, _nrt=False)
def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, names: np.ndarray,
          name_offsets: np.ndarray, pow10: np.ndarray,
          users: tuple, items: tuple, kinds: tuple,
          d_at: np.ndarray, d_cat: np.ndarray, d_meta: np.ndarray, d_arena: np.ndarray,
          new_tables: np.ndarray, new_hashes: np.ndarray, new_starts: np.ndarray,
          new_ends: np.ndarray, new_counts: np.ndarray, status: np.ndarray, rows: np.ndarray,
          spans: np.ndarray, ts: np.ndarray, desc: np.ndarray) -> None:
    """Parse each line ``buf[starts[n]:ends[n]]`` (see the module docstring for what is
    taken). Per line: ``status``; ``rows`` (user, item, event type: the vocabulary's row
    from ``users``, ``items``, ``kinds`` (:attr:`IdIndex.arrays`); -1 when not found, and for
    a user or item, ``-2 - m`` instead, where m numbers the ids new in this batch in order
    of first appearance, so each new id needs one string and one vocabulary insert however
    often it recurs); ``spans`` of the id, type, category and metadata bytes (-1: absent);
    ``ts``; and whether it describes its item with bytes that differ from the stored ones.
    ``new_*`` is the scratch of the new-id tables (row 0 users, row 1 items);
    ``new_counts`` receives how many new ids each has."""
    new_counts[0] = new_counts[1] = 0
    for n in range(len(starts)):
        end = ends[n]
        status[n] = _SLOW
        rows[n, 0] = rows[n, 1] = rows[n, 2] = -1
        desc[n] = _NONE
        for c in range(10):
            spans[n, c] = -1
        p = _ws(buf, starts[n], end)
        if p >= end or buf[p] != 123:
            continue
        p = _ws(buf, p + 1, end)
        seen = 0
        value = 0.0
        ok = False
        while p < end and buf[p] == 34:
            q = _plain_string_end(buf, p + 1, end)
            if q < 0:
                break
            k = _key(buf, p + 1, q, names, name_offsets)
            if k < 0 or (seen >> k) & 1:
                break  # an unknown or repeated key
            seen |= 1 << k
            p = _ws(buf, q + 1, end)
            if p >= end or buf[p] != 58:
                break
            p = _ws(buf, p + 1, end)
            if p >= end:
                break
            c = buf[p]
            if k <= 1:  # user_id, item_id
                if c == 34:
                    q = _plain_string_end(buf, p + 1, end)
                    if q < 0 or not _trimmed(buf, p + 1, q, MAX_ID_LENGTH):
                        break
                    spans[n, 2 * k] = p + 1  # _USER or _ITEM
                    spans[n, 2 * k + 1] = q
                    p = q + 1
                elif 48 <= c <= 57:
                    q = p
                    while q < end and 48 <= buf[q] <= 57:
                        q += 1
                    if (c == 48 and q - p > 1) or q - p > MAX_ID_LENGTH:
                        break
                    if q < end and (buf[q] == 46 or buf[q] == 101 or buf[q] == 69):
                        break  # a float id: the exact parser rejects it
                    spans[n, 2 * k] = p
                    spans[n, 2 * k + 1] = q
                    p = q
                else:
                    break
            elif k == 2:  # event
                if c != 34:
                    break
                q = _plain_string_end(buf, p + 1, end)
                if q < 0 or not _trimmed(buf, p + 1, q, MAX_TYPE_LENGTH):
                    break
                spans[n, _KIND] = p + 1
                spans[n, _KIND + 1] = q
                p = q + 1
            elif k == 3:  # ts
                if not 48 <= c <= 57:
                    break
                mantissa = 0
                digits = 0
                decimals = 0
                q = p
                while q < end and 48 <= buf[q] <= 57:
                    mantissa = mantissa * 10 + (buf[q] - 48)
                    digits += 1
                    q += 1
                if c == 48 and digits > 1:
                    break  # a leading zero is not JSON
                if q < end and buf[q] == 46:
                    q += 1
                    while q < end and 48 <= buf[q] <= 57:
                        mantissa = mantissa * 10 + (buf[q] - 48)
                        digits += 1
                        decimals += 1
                        q += 1
                    if decimals == 0:
                        break
                if q < end and (buf[q] == 101 or buf[q] == 69):
                    break
                if digits > 18 or mantissa >= _MAX_MANTISSA or decimals > 22:
                    break
                value = float(mantissa)
                if decimals:
                    value = value / pow10[decimals]
                if value > 1e11:  # milliseconds by mistake, as parse_ts
                    value = value / 1000.0
                if value > MAX_TS:
                    break
                p = q
            elif k == 4:  # category
                if c == 34:
                    q = _plain_string_end(buf, p + 1, end)
                    if q < 0 or q - p - 1 > MAX_ID_LENGTH:
                        break
                    if q > p + 1:  # "" describes nothing
                        spans[n, _CAT] = p + 1
                        spans[n, _CAT + 1] = q
                    p = q + 1
                elif _is_null(buf, p, end):
                    p += 4
                else:
                    break
            else:  # metadata
                if c == 123:
                    q = _object_end(buf, p, end)
                    if q < 0:
                        break
                    if _ws(buf, p + 1, q) < q - 1:  # {} describes nothing
                        spans[n, _META] = p
                        spans[n, _META + 1] = q
                    p = q
                elif _is_null(buf, p, end):
                    p += 4
                else:
                    break
            p = _ws(buf, p, end)
            if p < end and buf[p] == 44:
                p = _ws(buf, p + 1, end)
                continue
            if p < end and buf[p] == 125 and _ws(buf, p + 1, end) == end:
                ok = True
            break
        if not ok or (seen & 0b1011) != 0b1011:  # user_id, item_id and ts are required
            continue
        status[n] = _FAST
        ts[n] = value
        for w in range(2):  # the user, then the item
            a, b = spans[n, 2 * w], spans[n, 2 * w + 1]
            h = fnv1a(buf, a, b)
            ix = users if w == 0 else items
            row = ix[0][probe(buf, a, b, h, ix[0], ix[1], ix[2], ix[3], ix[4])]
            if row < 0:
                table = new_tables[w]
                slot = probe(buf, a, b, h, table, new_hashes[w], buf, new_starts[w],
                             new_ends[w])
                m = table[slot]
                if m < 0:
                    m = table[slot] = new_counts[w]
                    new_hashes[w, m], new_starts[w, m], new_ends[w, m] = h, a, b
                    new_counts[w] = m + 1
                row = -2 - m
            rows[n, w] = row
        item = rows[n, 1]
        if spans[n, _KIND] < 0:
            rows[n, 2] = 0  # "view", the first type the decoder knows
        else:
            a, b = spans[n, _KIND], spans[n, _KIND + 1]
            h = fnv1a(buf, a, b)
            rows[n, 2] = kinds[0][probe(buf, a, b, h, kinds[0], kinds[1], kinds[2], kinds[3],
                                        kinds[4])]
        if spans[n, _CAT] < 0 and spans[n, _META] < 0:
            continue
        desc[n] = _NEW
        if item >= 0 and d_at[item] >= 0:
            at = d_at[item]
            cat = d_cat[item]
            if (_same_bytes(buf, spans[n, _CAT], spans[n, _CAT + 1], cat, d_arena, at)
                    and _same_bytes(buf, spans[n, _META], spans[n, _META + 1], d_meta[item],
                                    d_arena, at + max(cat, 0))):
                desc[n] = _SAME


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
    (``-2 - m``) need one key each, taken from their first line; an unresolved id (-1: a type
    the scanner does not know, or a line the exact parser took) needs one per line. The keys
    go to the vocabulary in line order, so new rows follow first appearance exactly as on the
    string path."""
    new = (rows <= -2) & (status == _FAST)
    lines = np.flatnonzero(new)
    numbers = -2 - rows[lines]
    uniq, first = np.unique(numbers, return_index=True)
    keyed = lines[first]  # the first line of each new id
    unresolved = np.flatnonzero((rows == -1) & (status != _REJECTED))
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

    def __init__(self, users: Vocabulary, items: Vocabulary, weights: dict[str, float]) -> None:
        self.users, self.items = users, items
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
        status = np.empty(n, dtype=np.int8)
        rows = np.empty((n, 3), dtype=np.int64)
        spans = np.empty((n, 10), dtype=np.int64)
        ts = np.empty(n, dtype=np.float64)
        desc = np.empty(n, dtype=np.int8)
        new_tables = np.full((2, 1 << (2 * n).bit_length()), -1, dtype=np.int64)
        new_hashes = np.empty((2, n), dtype=np.uint64)
        new_starts = np.empty((2, n), dtype=np.int64)
        new_ends = np.empty((2, n), dtype=np.int64)
        new_counts = np.zeros(2, dtype=np.int64)
        _scan(buf, starts, ends, _NAMES, _NAME_OFFSETS, _POW10,
              u_ix.arrays, i_ix.arrays, k_ix.arrays, d.at, d.cat, d.meta, d.arena,
              new_tables, new_hashes, new_starts, new_ends, new_counts,
              status, rows, spans, ts, desc)

        # New descriptions: decode them (which validates the metadata object).
        docs: dict[int, dict] = {}
        for r in np.flatnonzero(desc == _NEW).tolist():
            ca, cb, ma, mb = spans[r, _CAT:_META + 2].tolist()
            try:
                meta = _METADATA.decode(data[ma:mb]) if ma >= 0 else None
            except msgspec.DecodeError:
                status[r], desc[r] = _SLOW, _NONE
                rows[r] = -1
                continue
            docs[r] = description(data[ca:cb].decode() if ca >= 0 else None, meta)

        # Lines the scanner did not take: the exact parser decides them.
        rejected: list[Rejected] = []
        events = {}
        for r in np.flatnonzero(status == _SLOW).tolist():
            try:
                e = events[r] = parse_json(raws[r])
            except EventError as exc:
                rejected.append(Rejected(raws[r], str(exc), r))
                status[r] = _REJECTED
                continue
            ts[r] = e.ts
            doc = description(e.category, e.metadata)
            if doc is not None:
                desc[r] = _NEW
                docs[r] = doc

        users = _resolve(self.users, rows[:, 0], status, spans, _USER, data, events, "user_id")
        items_before = len(self.items)
        items = _resolve(self.items, rows[:, 1], status, spans, _ITEM, data, events, "item_id")
        kinds = _resolve(self.kinds, rows[:, 2], status, spans, _KIND, data, events, "event")
        if len(self._kind_weights) < len(self.kinds):
            get = self._weights_table.get
            self._kind_weights = np.array([get(k, 1.0) for k in self.kinds.ids],
                                          dtype=np.float32)
        info = self._item_info(items, desc, status, docs, spans, data)
        weights = self._kind_weights[kinds]
        if rejected:
            keep = status != _REJECTED
            users, items, weights, ts = users[keep], items[keep], weights[keep], ts[keep]
        return RowBatch(users, items, weights, ts, items_before, info), rejected

    def _item_info(self, items: np.ndarray, desc: np.ndarray, status: np.ndarray,
                   docs: dict[int, dict], spans: np.ndarray, data: bytes) -> dict[int, dict]:
        """Each item's last description in the batch, in order of its first one, for the items
        whose last description is new (a repeated one changes nothing)."""
        lines = np.flatnonzero((desc != _NONE) & (status != _REJECTED))
        if not len(lines):
            return {}
        described = items[lines]
        uniq, first = np.unique(described, return_index=True)
        _, from_end = np.unique(described[::-1], return_index=True)
        last = lines[len(lines) - 1 - from_end]
        new = desc[last] == _NEW
        order = np.argsort(first[new], kind="stable")
        rows = uniq[new][order]
        lasts = last[new][order]
        info = {row: docs[r] for row, r in zip(rows.tolist(), lasts.tolist(), strict=True)}
        d = self._desc
        d.ensure(len(self.items))
        fast = status[lasts] == _FAST
        d.keep(rows[fast], spans[lasts[fast], _CAT:_META + 2], data)
        # An exact parser's description has no canonical bytes: the next one is decoded again.
        d.forget(rows[~fast])
        return info
