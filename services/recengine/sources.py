"""Event sources and dead-letter sinks: the stream the trainer reads and where rejects go.

A source hands out raw records in order and a *position* (a small JSON-able dict) after the
last one handed out. The trainer stores that position in every checkpoint and seeks back to it
on restart, so an event is applied to the model exactly once across crashes; ``commit`` tells
the source that everything up to a position is covered by a durable checkpoint.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, overload

import numpy as np

from recengine.config import Settings
from recengine.errors import ConfigError
from recengine.events import (
    Event,
    EventBatch,
    EventError,
    Rejected,
    format_for_path,
    is_csv_header,
    parse,
)


class Lines(Sequence[bytes]):
    """Lines of one file read, kept as the read's buffer and each line's byte range: a bytes
    object is made only for a line that is asked for. The trainer's scanner
    (:mod:`recengine.trainer.row_decoder`) reads the buffer directly; splitting a block into a
    bytes object per line and joining them again cost ~0.2 us per event."""

    __slots__ = ("data", "ends", "starts")

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self.data = data
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, n: int) -> bytes: ...
    @overload
    def __getitem__(self, n: slice) -> Lines: ...
    def __getitem__(self, n: int | slice) -> bytes | Lines:
        if isinstance(n, slice):
            return Lines(self.data, self.starts[n], self.ends[n])
        return self.data[int(self.starts[n]):int(self.ends[n])]

    def __iter__(self) -> Iterator[bytes]:
        data = self.data
        return (data[a:b] for a, b in zip(self.starts.tolist(), self.ends.tolist(),
                                          strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Lines | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lines({list(self)!r})"


def split_lines(data: bytes, cut: int, limit: int) -> tuple[Lines, int, int]:
    """The first ``limit`` lines of ``data[:cut]`` (which ends with a newline), the bytes they
    span and how many they are: without their ``\r``, blank lines dropped (they count towards
    ``limit``)."""
    buf = np.frombuffer(data, dtype=np.uint8, count=cut)
    ends = np.flatnonzero(buf == 10)[:limit]
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    used = int(ends[-1]) + 1 if len(ends) else 0
    taken = len(ends)
    if data.find(b"\r", 0, used) >= 0:  # str.rstrip(b"\r") for every line
        while True:
            cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
            if not cr.any():
                break
            ends = ends - cr
    keep = ends > starts
    if len(starts) and (lead := buf[starts[keep]] <= 32).any():
        # A line that starts with a byte <= b" " may be blank (whitespace only).
        kept = np.flatnonzero(keep)
        for n in kept[lead].tolist():
            if not data[starts[n]:ends[n]].strip():
                keep[n] = False
    if not keep.all():
        starts, ends = starts[keep], ends[keep]
    return Lines(data, starts, ends), used, taken


class EventSource(ABC):
    """An ordered stream of raw event records."""

    fmt: str = "jsonl"
    on_revoke: Callable[[], None] | None = None
    """Called before a partitioned source (Kafka) hands partitions to another consumer, so the
    trainer can checkpoint what it applied first; a source without partitions never calls it."""

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> Sequence[bytes]:
        """Up to ``max_records`` raw records, waiting at most ``timeout_s`` for the first."""

    @abstractmethod
    def position(self) -> dict:
        """The position just after the last record returned by ``poll``."""

    @abstractmethod
    def seek(self, position: dict) -> None:
        """Continue from a position returned by ``position`` (e.g. from a checkpoint)."""

    def commit(self, position: dict) -> None:
        """Everything up to ``position`` is covered by a durable checkpoint."""

    @property
    def last_offsets(self) -> Sequence[tuple[int, int]]:
        """(partition, offset) of each record of the last poll, by index; empty for a source
        without partitions (a dead letter then carries no source offset)."""
        return ()

    @abstractmethod
    def exhausted(self) -> bool:
        """True when a non-following source has nothing more to give."""

    def close(self) -> None:
        """Release resources."""


class FileEventSource(EventSource):
    """A JSON-lines, CSV or TSV file, optionally followed as it grows (``tail -f``).

    Only complete lines are handed out, so a line being appended is read once it is whole.
    """

    def __init__(self, path: str | Path, fmt: str = "auto", follow: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"events file {self.path} does not exist")
        self.fmt = format_for_path(str(self.path), fmt)
        self.follow = follow
        self._fh = self.path.open("rb")
        self._offset = 0
        self._eof = False
        self._line_bytes = 256.0  # running mean line length, to size block reads

    def poll(self, max_records: int, timeout_s: float) -> Sequence[bytes]:
        deadline = time.monotonic() + timeout_s
        while True:
            out = self._read(max_records)
            if out or not self.follow or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _read(self, max_records: int) -> Sequence[bytes]:
        """Up to ``max_records`` complete lines from the offset on, read in blocks sized from
        the lines seen so far, with no Python step per line (:func:`split_lines`)."""
        fh = self._fh
        fh.seek(self._offset)
        parts: list[Sequence[bytes]] = []
        count = 0
        pending = b""  # an incomplete line carried to the next block
        while count < max_records:
            want = max_records - count
            block = fh.read(min(4 << 20, max(4096, int(want * self._line_bytes * 1.05))))
            if not block:
                self._eof = True
                if pending and not self.follow:  # a last line without newline, file finished
                    self._offset += len(pending)
                    data = pending + b"\n"
                    parts.append(self._headless(split_lines(data, len(data), 1)[0]))
                break
            data = pending + block if pending else block
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut == 0:
                continue  # no line ends in this block yet (a very long line)
            lines, used, consumed = split_lines(data, cut, want)
            if used < cut:  # the limit cut the block: the loop reads on from ``used``
                pending = b""
                fh.seek(self._offset + used)
            self._line_bytes = 0.8 * self._line_bytes + 0.2 * used / consumed
            self._offset += used
            lines = self._headless(lines)
            parts.append(lines)
            count += len(lines)
        if len(parts) == 1:
            return parts[0]
        return [line for part in parts for line in part]

    def _headless(self, lines: Lines) -> Sequence[bytes]:
        """CSV lines without their header rows."""
        if self.fmt != "csv":
            return lines
        return [line for line in lines if not is_csv_header(line)]

    def position(self) -> dict:
        return {"file": str(self.path), "offset": self._offset}

    def seek(self, position: dict) -> None:
        self._offset = int(position.get("offset", 0))
        self._eof = False

    def exhausted(self) -> bool:
        return not self.follow and self._eof and self._offset >= os.path.getsize(self.path)

    def close(self) -> None:
        self._fh.close()


def decode(raws: Sequence[bytes], fmt: str) -> tuple[EventBatch, list[Rejected]]:
    """Validate raw records one by one with the exact parser: the good events in order (as a
    batch, which is also a sequence of :class:`Event`), and the rejects with their reasons.
    The trainer decodes JSON lines with its compiled scanner instead
    (:mod:`recengine.trainer.row_decoder`), which gives the same events and reasons."""
    good: list[Event] = []
    bad: list[Rejected] = []
    for n, raw in enumerate(raws):
        try:
            good.append(parse(raw, fmt))
        except EventError as exc:
            bad.append(Rejected(raw, str(exc), n))
    return EventBatch.from_events(good), bad


class DeadLetterSink(ABC):
    """Where rejected events go, each with its reason and its original bytes."""

    @abstractmethod
    def write(self, rejected: Sequence[Rejected]) -> None: ...

    def position(self) -> dict:
        """Position to store in a checkpoint (so a replay after a crash writes no duplicates)."""
        return {}

    def truncate(self, position: dict) -> None:
        """Forget what was written after ``position`` (used on restart from a checkpoint;
        an empty position means the beginning)."""

    def close(self) -> None:
        """Release resources."""


class FileDeadLetter(DeadLetterSink):
    """JSON lines ``{"reason", "raw" | "raw_b64", "at"}`` appended to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"dead-letter directory {self.path.parent} does not exist")
        self.path.touch(exist_ok=True)

    def write(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        now = time.time()
        lines = []
        for r in rejected:
            doc: dict = {"reason": r.reason, "at": now}
            try:
                doc["raw"] = r.raw.decode("utf-8")
            except UnicodeDecodeError:
                doc["raw_b64"] = base64.b64encode(r.raw).decode()
            lines.append(json.dumps(doc, ensure_ascii=False) + "\n")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(lines))

    def position(self) -> dict:
        return {"file": str(self.path), "size": self.path.stat().st_size}

    def truncate(self, position: dict) -> None:
        size = int(position.get("size", 0))
        if self.path.stat().st_size > size:
            os.truncate(self.path, size)


class EventSink(Protocol):
    """Where ``POST /events`` appends validated events; returns once they are durable."""

    def append(self, events: Sequence[Event]) -> None: ...


class FileEventSink:
    """Appends validated events to a JSON-lines stream file (``POST /events`` in embedded mode).

    An exclusive ``flock`` around each append keeps lines from concurrent writers (gunicorn
    workers) whole, and fsync makes an acknowledged event durable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"events directory {self.path.parent} does not exist")

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        data = "".join(e.to_json() + "\n" for e in events).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def open_source(settings: Settings) -> EventSource:
    url = settings.url("events")
    if url.scheme == "file":
        return FileEventSource(url.file_path, settings.events_format, settings.follow)
    if url.scheme == "kafka":
        from recengine.backends.kafka import KafkaEventSource, topic_of

        return KafkaEventSource(url, topic_of(url, settings.events_topic),
                                group=f"{settings.name}-trainer",
                                instance=settings.instance_name)
    raise ConfigError(f"events URL {url.raw!r}: unsupported scheme {url.scheme!r}")


def open_dead_letter(settings: Settings, source: EventSource | None = None) -> DeadLetterSink:
    url = settings.url("dlq")
    if url.scheme == "file":
        return FileDeadLetter(url.file_path)
    if url.scheme == "kafka":
        from recengine.backends.kafka import KafkaDeadLetter, topic_of

        return KafkaDeadLetter(url, topic_of(url, settings.dlq_topic), source)
    raise ConfigError(f"dlq URL {url.raw!r}: unsupported scheme {url.scheme!r}")


def open_event_sink(settings: Settings) -> EventSink:
    url = settings.url("events")
    if url.scheme == "file":
        return FileEventSink(url.file_path)
    if url.scheme == "kafka":
        from recengine.backends.kafka import KafkaEventSink, topic_of

        return KafkaEventSink(url, topic_of(url, settings.events_topic))
    raise ConfigError(f"events URL {url.raw!r}: unsupported scheme {url.scheme!r}")
