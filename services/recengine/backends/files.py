"""Embedded backends on the local file system: the artifact directory and its trainer lease,
the event stream file, the dead-letter file and the ``POST /events`` appender.

What ``file://`` URLs name (see :mod:`recengine.backends.registry`); they need no server, so
the demo and a laptop run the whole engine on them. Atomicity comes from rename(2) and
``flock``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from recengine.artifacts import ArtifactStore, parse_manifest
from recengine.config import BackendURL, Settings
from recengine.errors import ArtifactError, ConfigError
from recengine.events import Event, Rejected, format_for_path, is_csv_header
from recengine.lease import Lease, LeaseState
from recengine.sources import DeadLetterSink, EventSource, Lines

_VERSION_DIR = re.compile(r"^(\d{9})$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d{12,})\.bin$")
#: The trainer lease's file in an artifact directory.
LEASE_FILE = "trainer.lease"


def fsync_dir(path: Path) -> None:
    """Make the names in directory ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fully(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``: ``os.write`` may write less (a signal, a full pipe,
    a file size limit) and says so only by its return value."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write made no progress ({len(view)} bytes left)")
        view = view[written:]


def write_durable(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: written to a temporary file in
    the same directory, fsynced, renamed over ``path``, and the directory fsynced. On any
    error (ENOSPC included) the temporary file is removed and the old ``path`` is intact."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        try:
            write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` and fsync it (a file inside a directory renamed later)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_fully(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _artifact_dirs(root: Path, *subdirs: str) -> None:
    """Create the artifact directory ``root`` and its ``subdirs`` if missing; ConfigError
    naming ``root`` when that fails."""
    try:
        for path in (root, *(root / d for d in subdirs)):
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"artifact directory {root} is not usable: {exc}") from None


class FileArtifactStore(ArtifactStore):
    """A directory: ``checkpoints/checkpoint-<seq>.bin`` and ``versions/<number>/<blob>``.

    Atomicity comes from rename(2): files and whole version directories are written under a
    temporary name in the same directory, then renamed into place. Durability from fsync: of
    every blob and manifest before the rename, and of the directory after it, so a power cut
    never leaves a listed version or checkpoint with missing bytes. Temporary files are
    removed on error (a full disk); those a crash leaves behind go with :meth:`sweep`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.ckpt_dir = self.root / "checkpoints"
        self.ver_dir = self.root / "versions"
        _artifact_dirs(self.root, self.ckpt_dir.name, self.ver_dir.name)

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url.file_path)

    def put_checkpoint(self, seq: int, data: bytes) -> None:
        write_durable(self.ckpt_dir / f"checkpoint-{seq:012d}.bin", data)

    def checkpoints(self) -> list[int]:
        out = []
        for p in self.ckpt_dir.iterdir():
            m = _CHECKPOINT.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def get_checkpoint(self, seq: int) -> bytes:
        return (self.ckpt_dir / f"checkpoint-{seq:012d}.bin").read_bytes()

    def delete_checkpoint(self, seq: int) -> None:
        (self.ckpt_dir / f"checkpoint-{seq:012d}.bin").unlink(missing_ok=True)

    def publish(self, blobs: dict[str, bytes], manifest: dict) -> int:
        tmp = Path(tempfile.mkdtemp(dir=self.ver_dir, prefix=".tmp-"))
        try:
            for name, data in blobs.items():
                _write_synced(tmp / name, data)
            while True:
                number = (self.versions() or [0])[-1] + 1
                doc = {**manifest, "version": number}
                (tmp / "manifest.json").unlink(missing_ok=True)
                _write_synced(tmp / "manifest.json",
                              json.dumps(doc, indent=2, sort_keys=True).encode())
                fsync_dir(tmp)
                try:
                    os.rename(tmp, self.ver_dir / f"{number:09d}")
                    fsync_dir(self.ver_dir)
                    return number
                except OSError:
                    if not (self.ver_dir / f"{number:09d}").exists():
                        raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def versions(self) -> list[int]:
        return sorted(int(p.name) for p in self.ver_dir.iterdir() if _VERSION_DIR.match(p.name))

    def manifest(self, version: int) -> dict:
        path = self.ver_dir / f"{version:09d}" / "manifest.json"
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"embedding version {version} does not exist") from None
        return parse_manifest(version, text, str(path))

    def blob(self, version: int, name: str) -> bytes:
        try:
            return (self.ver_dir / f"{version:09d}" / name).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"embedding version {version} has no blob {name!r}") from None

    def delete_version(self, version: int) -> None:
        shutil.rmtree(self.ver_dir / f"{version:09d}", ignore_errors=True)

    def mark_serving(self, holder: str, version: int) -> None:
        marks = self.ver_dir / ".serving"
        marks.mkdir(exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", holder)
        doc = {"holder": holder, "version": int(version), "at": time.time()}
        write_durable(marks / f"{safe}.json", json.dumps(doc).encode())

    def serving_marks(self) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        marks = self.ver_dir / ".serving"
        if not marks.is_dir():
            return out
        for p in marks.glob("*.json"):
            try:
                doc = json.loads(p.read_bytes())
                out[str(doc["holder"])] = (int(doc["version"]), float(doc["at"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a mark being replaced, or corrupt; the next renewal rewrites it
        return out

    def sweep(self, older_than_s: float) -> int:
        """Remove temporary files and directories a crash left (older than ``older_than_s``,
        so one being written now is kept); returns how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        for folder in (self.ckpt_dir, self.ver_dir, self.ver_dir / ".serving"):
            if not folder.is_dir():
                continue
            for p in folder.glob(".tmp-*"):
                try:
                    if p.lstat().st_mtime > cutoff:
                        continue
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        return removed


class FileLease(Lease):
    """The lease as a JSON file, read and written under an exclusive ``flock`` of a lock file:
    for trainers sharing a file artifact store (one machine, or one shared volume)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._local = threading.Lock()

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        """The lease of the artifact directory ``url`` names (created if missing)."""
        _artifact_dirs(url.file_path)
        return cls(url.file_path / LEASE_FILE)

    def _locked(self, change: Callable[[LeaseState | None], tuple[object, LeaseState | None]]
                ) -> object:
        """``change(state) -> (result, new state or None)``, atomically across processes."""
        with self._local:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = self._read()
                result, new = change(state)
                if new is not None:
                    write_durable(self.path, json.dumps(vars(new)).encode())
                return result
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _read(self) -> LeaseState | None:
        try:
            doc = json.loads(self.path.read_bytes())
            return LeaseState(str(doc["holder"]), int(doc["epoch"]), float(doc["expires"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"trainer lease {self.path} is corrupt ({type(exc).__name__}: "
                                f"{exc}); remove it once no trainer runs") from None

    def acquire(self, holder: str, ttl_s: float) -> int | None:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            now = time.time()
            if st is not None and st.holder != holder and st.expires > now:
                return None, None
            new = LeaseState(holder, (st.epoch if st else 0) + 1, now + ttl_s)
            return new.epoch, new
        return self._locked(change)  # type: ignore[return-value]

    def renew(self, holder: str, epoch: int, ttl_s: float) -> bool:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            if st is None or (st.holder, st.epoch) != (holder, epoch):
                return False, None
            return True, LeaseState(holder, epoch, time.time() + ttl_s)
        return bool(self._locked(change))

    def release(self, holder: str, epoch: int) -> None:
        def change(st: LeaseState | None) -> tuple[object, LeaseState | None]:
            if st is None or (st.holder, st.epoch) != (holder, epoch):
                return None, None
            return None, LeaseState(holder, epoch, 0.0)
        self._locked(change)

    def current(self) -> LeaseState | None:
        return self._locked(lambda st: (st, None))  # type: ignore[return-value]


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

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self:
        return cls(url.file_path, settings.events_format, settings.follow)

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


class FileDeadLetter(DeadLetterSink):
    """JSON lines ``{"reason", "raw" | "raw_b64", "at"}`` appended to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"dead-letter directory {self.path.parent} does not exist")
        self.path.touch(exist_ok=True)

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings,
                 source: EventSource | None = None) -> Self:
        return cls(url.file_path)

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


class FileEventSink:
    """Appends validated events to a JSON-lines stream file (``POST /events`` in embedded mode).

    An exclusive ``flock`` around each append keeps lines from concurrent writers (gunicorn
    workers) whole, and fsync makes an acknowledged event durable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"events directory {self.path.parent} does not exist")

    @classmethod
    def from_url(cls, url: BackendURL, settings: Settings) -> Self:
        return cls(url.file_path)

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        data = "".join(e.to_json() + "\n" for e in events).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            write_fully(fd, data)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
