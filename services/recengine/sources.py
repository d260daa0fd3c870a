"""Event sources and dead-letter sinks: the stream the trainer reads and where rejects go.

A source hands out raw records in order and a *position* (a small JSON-able dict) after the
last one handed out. The trainer stores that position in every checkpoint and seeks back to it
on restart, so an event is applied to the model exactly once across crashes; ``commit`` tells
the source that everything up to a position is covered by a durable checkpoint.

The backends (a file, Kafka) live in :mod:`recengine.backends`, chosen by URL scheme in
:mod:`recengine.backends.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, Self, overload

import numpy as np

from recengine.config import BackendURL, Settings
from recengine.events import (
    DEFAULT_LIMITS,
    Event,
    EventBatch,
    EventError,
    Limits,
    Rejected,
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


class EventSource(ABC):
    """An ordered stream of raw event records."""

    fmt: str = "jsonl"
    on_revoke: Callable[[], None] | None = None
    """Called before a partitioned source (Kafka) hands partitions to another consumer, so the
    trainer can checkpoint what it applied first; a source without partitions never calls it."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self:
        """The stream ``url`` names, read as ``settings`` say (format, group, replica)."""

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


def decode(raws: Sequence[bytes], fmt: str, limits: Limits = DEFAULT_LIMITS
           ) -> tuple[EventBatch, list[Rejected]]:
    """Validate raw records one by one with the exact parser: the good events in order (as a
    batch, which is also a sequence of :class:`Event`), and the rejects with their reasons.
    The trainer decodes JSON lines with its compiled scanner instead
    (:mod:`recengine.trainer.row_decoder`), which gives the same events and reasons."""
    good: list[Event] = []
    bad: list[Rejected] = []
    for n, raw in enumerate(raws):
        try:
            good.append(parse(raw, fmt, limits))
        except EventError as exc:
            bad.append(Rejected(raw, str(exc), n))
    return EventBatch.from_events(good), bad


class DeadLetterSink(ABC):
    """Where rejected events go, each with its reason and its original bytes."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, settings: Settings,
                 source: EventSource | None = None) -> Self:
        """The sink ``url`` names, for rejects of ``source`` (whose partitions it mirrors)."""

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


class EventSink(Protocol):
    """Where ``POST /events`` appends validated events; returns once they are durable."""

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self: ...

    def append(self, events: Sequence[Event]) -> None: ...


