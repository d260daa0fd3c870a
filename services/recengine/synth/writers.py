"""The public outputs: ``generate`` (records in memory) and ``write_stream`` (jsonl, csv, tsv)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recengine.synth.config import SynthConfig
from recengine.synth.malformed import MalformedRecord, dumps, malformed_csv, malformed_json
from recengine.synth.simulator import Simulator


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_stream`` wrote."""

    path: str
    fmt: str
    events: int
    """Valid events written."""
    malformed: int
    """Malformed lines written (always 0 for tsv)."""
    users: int
    """Distinct users in the valid events."""
    items: int
    """Distinct items in the valid events."""
    first_ts: float
    last_ts: float


def generate(config: SynthConfig) -> Iterator[dict[str, Any] | str]:
    """Yield events in time order: a dict for a valid event, a raw str for a malformed line.

    Exactly ``config.events`` dicts are yielded; malformed lines come on top, so their
    share among all yielded records is about ``config.malformed_rate``. A malformed
    string is the line a broken producer would have written (a truncated JSON object, a
    JSON object with a missing / empty / wrongly typed / over-long field, ...). The same
    config always yields the same records. Valid dicts are fresh objects the caller may
    mutate.
    """
    for rec in Simulator(config).records():
        yield malformed_json(rec) if isinstance(rec, MalformedRecord) else rec

def write_stream(path: str | Path, config: SynthConfig, fmt: str = "jsonl") -> SynthSummary:
    """Write the stream of ``config`` to ``path`` and return what was written.

    Formats:

    * ``jsonl`` - one JSON object per line (compact separators), malformed lines written
      as-is; the lines are exactly those of ``generate(config)``.
    * ``csv`` - header ``user_id,item_id,event,ts,category,title``; category and title are
      filled where the jsonl event carries them, else empty. Malformed rows have a bad ts
      (non-numeric / negative), an empty or over-long id, or a wrong number of columns.
    * ``tsv`` - ``user<TAB>item<TAB>ts``, no header and no malformed lines (MovieLens-like).

    Parent directories are created.
    """
    if fmt not in ("jsonl", "csv", "tsv"):
        raise ValueError(f"unknown format {fmt!r}; expected 'jsonl', 'csv' or 'tsv'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_events = n_bad = 0
    users: set[str] = set()
    items: set[str] = set()
    first_ts = last_ts = math.nan
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(["user_id", "item_id", "event", "ts", "category", "title"])
        for rec in Simulator(config).records():
            if isinstance(rec, MalformedRecord):
                if fmt == "jsonl":
                    fh.write(malformed_json(rec) + "\n")
                    n_bad += 1
                elif writer is not None:
                    writer.writerow(malformed_csv(rec))
                    n_bad += 1
                continue
            n_events += 1
            users.add(rec["user_id"])
            items.add(rec["item_id"])
            if n_events == 1:
                first_ts = rec["ts"]
            last_ts = rec["ts"]
            if fmt == "jsonl":
                fh.write(dumps(rec) + "\n")
            elif writer is not None:
                title = rec["metadata"]["title"] if "metadata" in rec else ""
                writer.writerow(
                    [rec["user_id"], rec["item_id"], rec["event"], repr(rec["ts"]),
                     rec.get("category", ""), title]
                )  # fmt: skip
            else:
                fh.write(f"{rec['user_id']}\t{rec['item_id']}\t{rec['ts']!r}\n")
    return SynthSummary(
        path=str(path),
        fmt=fmt,
        events=n_events,
        malformed=n_bad,
        users=len(users),
        items=len(items),
        first_ts=first_ts,
        last_ts=last_ts,
    )
