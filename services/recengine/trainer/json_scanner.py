"""The compiled scanner of JSON event lines (numba): bytes to spans, times and vocabulary rows.

:class:`~recengine.trainer.row_decoder.RowDecoder` calls :func:`scan` on a polled batch and
turns what it finds into the learner's rows; see that module for what the scanner accepts and
why (it takes only lines it can decide exactly and leaves the rest to the exact parser).

Byte values are named module-level ints and the key table and powers of ten are module-level
arrays: numba freezes both into the compiled code as constants, so naming them costs nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from recengine.events import MAX_ID_LENGTH, MAX_TS, MAX_TYPE_LENGTH
from recengine.trainer.id_index import equal_bytes, fnv1a, probe

# Bytes of JSON's grammar.
SPACE, TAB, LF, CR = ord(" "), ord("\t"), ord("\n"), ord("\r")
QUOTE, BACKSLASH = ord('"'), ord("\\")
OPEN_BRACE, CLOSE_BRACE = ord("{"), ord("}")
OPEN_BRACKET, CLOSE_BRACKET = ord("["), ord("]")
COLON, COMMA, DOT = ord(":"), ord(","), ord(".")
DIGIT_0, DIGIT_9 = ord("0"), ord("9")
EXP_LOWER, EXP_UPPER = ord("e"), ord("E")
NULL_N, NULL_U, NULL_L = ord("n"), ord("u"), ord("l")
FIRST_PRINTABLE = 0x20  # bytes below are control characters, which JSON strings must escape
FIRST_NON_ASCII = 0x80

#: The event's keys; a line's ``seen`` mask has bit i set once it held ``KEYS[i]``.
KEYS = (b"user_id", b"item_id", b"event", b"ts", b"category", b"metadata")
KEY_USER, KEY_ITEM, KEY_EVENT, KEY_TS, KEY_CATEGORY, KEY_METADATA = range(len(KEYS))
REQUIRED_KEYS = (1 << KEY_USER) | (1 << KEY_ITEM) | (1 << KEY_TS)
_NAMES = np.frombuffer(b"".join(KEYS), dtype=np.uint8)
_NAME_OFFSETS = np.cumsum([0, *map(len, KEYS)]).astype(np.int64)

_POW10 = np.array([10.0 ** e for e in range(23)])  # all exact doubles
_MAX_MANTISSA = 2 ** 53
_MAX_DIGITS = 18  # at most 10**18 - 1 < 2**63: the mantissa cannot overflow before the check
_MAX_DECIMALS = len(_POW10) - 1
_SECONDS_UP_TO = 1e11  # a larger time is milliseconds by mistake, as ``events.parse_ts`` says

# Columns of ``spans``: [start, stop) byte ranges in the buffer, -1 when absent; the user's,
# item's and event type's are at ``2 * KEY_USER``, ``2 * KEY_ITEM`` and ``2 * KEY_EVENT``.
USER, ITEM, KIND, CAT, META = 0, 2, 4, 6, 8
assert (USER, ITEM, KIND) == (2 * KEY_USER, 2 * KEY_ITEM, 2 * KEY_EVENT)
SPAN_COLUMNS = 10
# ``status``: the scanner took the line / the exact parser decides it / rejected.
FAST, SLOW, REJECTED = 0, 1, 2
# ``desc``: the line describes nothing / the same bytes as its item's last description / new.
NONE, SAME, NEW = 0, 1, 2
# ``rows`` of an id not in the vocabulary; a user or item new in this batch gets ``NEW_ID - m``.
UNKNOWN, NEW_ID = -1, -2


class Lookups(NamedTuple):
    """The vocabularies' :attr:`IdIndex.arrays <recengine.trainer.id_index.IdIndex.arrays>`."""

    users: tuple
    items: tuple
    kinds: tuple


class KnownDescriptions(NamedTuple):
    """Per item row, where its last description's bytes are kept in ``arena`` (``at``, -1:
    none kept) and the lengths of its category and metadata (-1: absent)."""

    at: np.ndarray
    cat: np.ndarray
    meta: np.ndarray
    arena: np.ndarray


class NewIds(NamedTuple):
    """Scratch hash tables of the ids new in a batch (row 0 users, row 1 items), and how many
    each holds once the scan is done (``counts``)."""

    tables: np.ndarray
    hashes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    counts: np.ndarray

    @classmethod
    def for_lines(cls, n: int) -> NewIds:
        return cls(np.full((2, 1 << (2 * n).bit_length()), -1, dtype=np.int64),
                   np.empty((2, n), dtype=np.uint64), np.empty((2, n), dtype=np.int64),
                   np.empty((2, n), dtype=np.int64), np.zeros(2, dtype=np.int64))


class Scanned(NamedTuple):
    """Per line: ``status``; ``rows`` (user, item, event type); ``spans``; ``ts``; ``desc``."""

    status: np.ndarray
    rows: np.ndarray
    spans: np.ndarray
    ts: np.ndarray
    desc: np.ndarray

    @classmethod
    def for_lines(cls, n: int) -> Scanned:
        return cls(np.empty(n, dtype=np.int8), np.empty((n, 3), dtype=np.int64),
                   np.empty((n, SPAN_COLUMNS), dtype=np.int64), np.empty(n, dtype=np.float64),
                   np.empty(n, dtype=np.int8))


@njit(inline="always")
def _ws(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and (buf[p] == SPACE or buf[p] == TAB or buf[p] == LF or buf[p] == CR):
        p += 1
    return p


@njit(inline="always")
def _is_digit(c: int) -> bool:
    return DIGIT_0 <= c <= DIGIT_9


@njit(inline="always")
def _plain_string_end(buf: np.ndarray, p: int, end: int) -> int:
    """From just after an opening quote, the index of the closing quote; -1 when the string
    holds an escape, a control byte or a non-ASCII byte (the exact parser decides those)."""
    while p < end:
        c = buf[p]
        if c == QUOTE:
            return p
        if c == BACKSLASH or c < FIRST_PRINTABLE or c >= FIRST_NON_ASCII:
            return -1
        p += 1
    return -1


@njit(inline="always")
def _name_end(buf: np.ndarray, p: int, end: int, longest: int) -> int:
    """From just after an opening quote, the index of the closing quote of a plain string (see
    :func:`_plain_string_end`) that ``str.strip`` leaves as it is, not empty and at most
    ``longest`` long (an id or an event type); else -1."""
    q = _plain_string_end(buf, p, end)
    if q <= p or q - p > longest or buf[p] == SPACE or buf[q - 1] == SPACE:
        return -1
    return q


@njit(inline="always")
def _key(buf: np.ndarray, a: int, b: int) -> int:
    """The index of the key ``buf[a:b]`` in :data:`KEYS`, or -1. The event's keys differ in
    length or first byte, so one candidate is compared."""
    n = b - a
    if n == 0:
        return -1
    first = buf[a]
    k = -1
    for c in range(len(_NAME_OFFSETS) - 1):
        if _NAME_OFFSETS[c + 1] - _NAME_OFFSETS[c] == n and _NAMES[_NAME_OFFSETS[c]] == first:
            k = c
            break
    if k < 0:
        return -1
    s = _NAME_OFFSETS[k]
    j = 1
    while j < n and buf[a + j] == _NAMES[s + j]:
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
        if c == QUOTE:
            p += 1
            while p < end and buf[p] != QUOTE:
                if buf[p] == BACKSLASH:
                    p += 1
                p += 1
            if p >= end:
                return -1
        elif c == OPEN_BRACE or c == OPEN_BRACKET:  # noqa: SIM109  (two compares in numba)
            depth += 1
        elif c == CLOSE_BRACE or c == CLOSE_BRACKET:  # noqa: SIM109
            depth -= 1
            if depth == 0:
                return p + 1 if c == CLOSE_BRACE else -1
        p += 1
    return -1


@njit(inline="always")
def _is_null(buf: np.ndarray, p: int, end: int) -> bool:
    return (p + 4 <= end and buf[p] == NULL_N and buf[p + 1] == NULL_U
            and buf[p + 2] == NULL_L and buf[p + 3] == NULL_L)


@njit(inline="always")
def _integer_id_end(buf: np.ndarray, p: int, end: int) -> int:
    """From a digit, the end of a non-negative JSON integer used as an id, or -1 when it is
    not one the scanner takes (a leading zero, too long, or a float: the exact parser decides)."""
    q = p
    while q < end and _is_digit(buf[q]):
        q += 1
    if (buf[p] == DIGIT_0 and q - p > 1) or q - p > MAX_ID_LENGTH:
        return -1
    if q < end and (buf[q] == DOT or buf[q] == EXP_LOWER or buf[q] == EXP_UPPER):
        return -1
    return q


@njit(inline="always")
def _time(buf: np.ndarray, p: int, end: int) -> tuple[int, float]:
    """From a digit, (end, seconds) of a JSON number the scanner can convert exactly (no
    exponent, digits within 2**53, at most 22 decimals: Clinger's fast path), or (-1, 0)."""
    mantissa = 0
    digits = 0
    decimals = 0
    q = p
    while q < end and _is_digit(buf[q]):
        mantissa = mantissa * 10 + (buf[q] - DIGIT_0)
        digits += 1
        q += 1
    if buf[p] == DIGIT_0 and digits > 1:
        return -1, 0.0  # a leading zero is not JSON
    if q < end and buf[q] == DOT:
        q += 1
        while q < end and _is_digit(buf[q]):
            mantissa = mantissa * 10 + (buf[q] - DIGIT_0)
            digits += 1
            decimals += 1
            q += 1
        if decimals == 0:
            return -1, 0.0
    if q < end and (buf[q] == EXP_LOWER or buf[q] == EXP_UPPER):
        return -1, 0.0
    if digits > _MAX_DIGITS or mantissa >= _MAX_MANTISSA or decimals > _MAX_DECIMALS:
        return -1, 0.0
    value = float(mantissa)
    if decimals:
        value = value / _POW10[decimals]
    if value > _SECONDS_UP_TO:
        value = value / 1000.0
    if value > MAX_TS:
        return -1, 0.0
    return q, value


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
def scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, lookups: Lookups,
         known: KnownDescriptions, new: NewIds, out: Scanned) -> None:
    """Parse each line ``buf[starts[n]:ends[n]]`` into ``out``. Per line: ``status``; ``rows``
    (user, item, event type: the vocabulary's row from ``lookups``; :data:`UNKNOWN` when not
    found, and for a user or item, ``NEW_ID - m`` instead, where m numbers the ids new in this
    batch in order of first appearance, so each new id needs one string and one vocabulary
    insert however often it recurs); ``spans`` of the id, type, category and metadata bytes
    (-1: absent); ``ts``; and whether it describes its item with bytes that differ from the
    ``known`` ones. ``new`` is the scratch of the new-id tables."""
    status, rows, spans, ts, desc = out
    new.counts[0] = new.counts[1] = 0
    for n in range(len(starts)):
        end = ends[n]
        status[n] = SLOW
        rows[n, 0] = rows[n, 1] = rows[n, 2] = UNKNOWN
        desc[n] = NONE
        for c in range(SPAN_COLUMNS):
            spans[n, c] = -1
        p = _ws(buf, starts[n], end)
        if p >= end or buf[p] != OPEN_BRACE:
            continue
        p = _ws(buf, p + 1, end)
        seen = 0
        value = 0.0
        ok = False
        while p < end and buf[p] == QUOTE:
            q = _plain_string_end(buf, p + 1, end)
            if q < 0:
                break
            k = _key(buf, p + 1, q)
            if k < 0 or (seen >> k) & 1:
                break  # an unknown or repeated key
            seen |= 1 << k
            p = _ws(buf, q + 1, end)
            if p >= end or buf[p] != COLON:
                break
            p = _ws(buf, p + 1, end)
            if p >= end:
                break
            c = buf[p]
            if k <= KEY_EVENT:  # user_id, item_id, event: spans USER, ITEM, KIND
                col = 2 * k
                if c == QUOTE:
                    q = _name_end(buf, p + 1, end,
                                  MAX_TYPE_LENGTH if k == KEY_EVENT else MAX_ID_LENGTH)
                    if q < 0:
                        break
                    spans[n, col] = p + 1
                    spans[n, col + 1] = q
                    p = q + 1
                elif k != KEY_EVENT and _is_digit(c):  # an integer id
                    q = _integer_id_end(buf, p, end)
                    if q < 0:
                        break
                    spans[n, col] = p
                    spans[n, col + 1] = q
                    p = q
                else:
                    break
            elif k == KEY_TS:
                if not _is_digit(c):
                    break
                q, value = _time(buf, p, end)
                if q < 0:
                    break
                p = q
            elif k == KEY_CATEGORY:
                if c == QUOTE:
                    q = _plain_string_end(buf, p + 1, end)
                    if q < 0 or q - p - 1 > MAX_ID_LENGTH:
                        break
                    if q > p + 1:  # "" describes nothing
                        spans[n, CAT] = p + 1
                        spans[n, CAT + 1] = q
                    p = q + 1
                elif _is_null(buf, p, end):
                    p += 4
                else:
                    break
            else:  # metadata
                if c == OPEN_BRACE:
                    q = _object_end(buf, p, end)
                    if q < 0:
                        break
                    if _ws(buf, p + 1, q) < q - 1:  # {} describes nothing
                        spans[n, META] = p
                        spans[n, META + 1] = q
                    p = q
                elif _is_null(buf, p, end):
                    p += 4
                else:
                    break
            p = _ws(buf, p, end)
            if p < end and buf[p] == COMMA:
                p = _ws(buf, p + 1, end)
                continue
            if p < end and buf[p] == CLOSE_BRACE and _ws(buf, p + 1, end) == end:
                ok = True
            break
        if not ok or (seen & REQUIRED_KEYS) != REQUIRED_KEYS:
            continue
        status[n] = FAST
        ts[n] = value
        for w in range(2):  # the user, then the item
            a, b = spans[n, 2 * w], spans[n, 2 * w + 1]
            h = fnv1a(buf, a, b)
            ix = lookups.users if w == 0 else lookups.items
            row = ix[0][probe(buf, a, b, h, ix[0], ix[1], ix[2], ix[3], ix[4])]
            if row < 0:
                table = new.tables[w]
                slot = probe(buf, a, b, h, table, new.hashes[w], buf, new.starts[w],
                             new.ends[w])
                m = table[slot]
                if m < 0:
                    m = table[slot] = new.counts[w]
                    new.hashes[w, m], new.starts[w, m], new.ends[w, m] = h, a, b
                    new.counts[w] = m + 1
                row = NEW_ID - m
            rows[n, w] = row
        item = rows[n, 1]
        if spans[n, KIND] < 0:
            rows[n, 2] = 0  # "view", the first type the decoder knows
        else:
            a, b = spans[n, KIND], spans[n, KIND + 1]
            h = fnv1a(buf, a, b)
            kinds = lookups.kinds
            rows[n, 2] = kinds[0][probe(buf, a, b, h, kinds[0], kinds[1], kinds[2], kinds[3],
                                        kinds[4])]
        if spans[n, CAT] < 0 and spans[n, META] < 0:
            continue
        desc[n] = NEW
        if item >= 0 and known.at[item] >= 0:
            at = known.at[item]
            cat = known.cat[item]
            if (_same_bytes(buf, spans[n, CAT], spans[n, CAT + 1], cat, known.arena, at)
                    and _same_bytes(buf, spans[n, META], spans[n, META + 1], known.meta[item],
                                    known.arena, at + max(cat, 0))):
                desc[n] = SAME
