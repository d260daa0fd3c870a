"""Byte-string ids -> vocabulary rows, readable from compiled code.

The trainer's event scanner (:mod:`recengine.trainer.json_scanner`) resolves ids while it parses
a line, without making a Python string per id. :class:`IdIndex` mirrors a
:class:`~recengine.vocab.Vocabulary` as an open-addressing hash table over the ids' UTF-8
bytes (FNV-1a hashes, linear probing, at most half full) whose arrays the compiled code reads.
The vocabulary stays the only owner of rows: the index never assigns one, it catches up with
the vocabulary (``sync``) before each scan, so rows added by any path (the exact parser, a
restored checkpoint) are found from the next scan on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recengine.vocab import Vocabulary

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)


@njit(inline="always")
def fnv1a(buf: np.ndarray, start: int, stop: int) -> np.uint64:
    h = _FNV_OFFSET
    for j in range(start, stop):
        h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
    return h


@njit(inline="always")
def equal_bytes(x: np.ndarray, at_x: int, y: np.ndarray, at_y: int, n: int) -> bool:
    """``x[at_x:at_x + n] == y[at_y:at_y + n]``, without slicing (no array views)."""
    j = 0
    while j < n and x[at_x + j] == y[at_y + j]:
        j += 1
    return j == n


@njit(inline="always")
def probe(buf: np.ndarray, start: int, stop: int, h: np.uint64, table: np.ndarray,
          hashes: np.ndarray, keys: np.ndarray, key_starts: np.ndarray,
          key_ends: np.ndarray) -> int:
    """The slot of ``table`` that holds the id ``buf[start:stop]`` (whose :func:`fnv1a` is
    ``h``), or the empty slot (-1) where it would go. ``table`` holds numbers r whose id is
    ``keys[key_starts[r]:key_ends[r]]`` and whose hash is ``hashes[r]``."""
    mask = len(table) - 1
    slot = np.int64(h & np.uint64(mask))
    n = stop - start
    while True:
        r = table[slot]
        if r < 0:
            return slot
        s = key_starts[r]
        if hashes[r] == h and key_ends[r] - s == n and equal_bytes(keys, s, buf, start, n):
            return slot
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True)
def _insert_rows(table: np.ndarray, hashes: np.ndarray, arena: np.ndarray, offsets: np.ndarray,
                 hashed: int, first: int, stop: int) -> None:
    """Hash rows ``hashed..stop`` and put rows ``first..stop`` into ``table`` (``first`` is 0
    after a resize, when the table starts empty and every row goes in again)."""
    starts, ends = offsets[:-1], offsets[1:]
    for r in range(hashed, stop):
        hashes[r] = fnv1a(arena, starts[r], ends[r])
    for r in range(first, stop):
        a, b = starts[r], ends[r]
        table[probe(arena, a, b, hashes[r], table, hashes, arena, starts, ends)] = r


def _grown(a: np.ndarray, need: int, fill: int = 0) -> np.ndarray:
    if need <= len(a):
        return a
    out = np.full(max(need, 2 * len(a)), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class IdIndex:
    """A vocabulary's ids as a hash table over their UTF-8 bytes (see the module docstring)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.size = 0  # rows indexed so far
        self.table = np.full(64, -1, dtype=np.int64)
        self.hashes = np.zeros(32, dtype=np.uint64)
        self.arena = np.zeros(1024, dtype=np.uint8)
        self.offsets = np.zeros(33, dtype=np.int64)
        self.sync()

    def sync(self) -> None:
        """Index the rows the vocabulary gained since the last call."""
        ids = self.vocab.ids
        stop = len(ids)
        start = self.size
        if stop == start:
            return
        # surrogatepass: an id decoded from a JSON escape may hold a lone surrogate; its bytes
        # can never match a line the scanner accepts (it takes plain ASCII ids only).
        new = [x.encode("utf-8", "surrogatepass") for x in ids[start:]]
        lengths = np.fromiter(map(len, new), dtype=np.int64, count=len(new))
        self.offsets = _grown(self.offsets, stop + 1)
        base = self.offsets[start]
        self.offsets[start + 1: stop + 1] = base + np.cumsum(lengths)
        end = int(self.offsets[stop])
        self.arena = _grown(self.arena, end)
        self.arena[base:end] = np.frombuffer(b"".join(new), dtype=np.uint8)
        self.hashes = _grown(self.hashes, stop)
        first = start
        if 2 * stop > len(self.table):  # keep the table at most half full
            size = len(self.table)
            while 2 * stop > size:
                size *= 4
            self.table = np.full(size, -1, dtype=np.int64)
            first = 0
        _insert_rows(self.table, self.hashes, self.arena, self.offsets, start, first, stop)
        self.size = stop

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """What :func:`probe` reads after ``buf, start, stop, h``: the table, the rows' hashes,
        their bytes and where each row's bytes start and end."""
        return self.table, self.hashes, self.arena, self.offsets[:-1], self.offsets[1:]

    def lookup(self, key: bytes) -> int:
        """The row of one id given as bytes (-1 if unknown); for tests and tools."""
        self.sync()
        buf = np.frombuffer(key, dtype=np.uint8)
        return _lookup_one(buf, *self.arrays)


@njit(cache=True)
def _lookup_one(buf: np.ndarray, table: np.ndarray, hashes: np.ndarray, arena: np.ndarray,
                key_starts: np.ndarray, key_ends: np.ndarray) -> int:
    n = len(buf)
    return table[probe(buf, 0, n, fnv1a(buf, 0, n), table, hashes, arena, key_starts, key_ends)]
