"""Artifact stores: where checkpoints and embedding versions live.

The interface is what the trainer, index service, API and operator see; the backend is chosen
by URL scheme in :func:`open_artifact_store`. An embedding version is published atomically from
a reader's point of view: it becomes visible (listed, loadable) only once every blob is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

from recengine.config import BackendURL
from recengine.errors import ArtifactError, ConfigError
from recengine.lease import FileLease, Lease

_VERSION_DIR = re.compile(r"^(\d{9})$")
#: An index pod renews its serving mark every few minutes; a mark older than this is from a
#: pod that is gone, and no longer keeps its version from being pruned.
SERVING_MARK_TTL_S = 3600.0
_CHECKPOINT = re.compile(r"^checkpoint-(\d{12,})\.bin$")


class ArtifactStore(ABC):
    """Checkpoints (opaque bytes, numbered by sequence) and numbered, immutable versions."""

    @abstractmethod
    def put_checkpoint(self, seq: int, data: bytes) -> None:
        """Store a checkpoint atomically (a reader sees all of it or none)."""

    @abstractmethod
    def checkpoints(self) -> list[int]:
        """Sequence numbers of the stored checkpoints, ascending."""

    @abstractmethod
    def get_checkpoint(self, seq: int) -> bytes: ...

    @abstractmethod
    def delete_checkpoint(self, seq: int) -> None: ...

    @abstractmethod
    def publish(self, blobs: dict[str, bytes], manifest: dict) -> int:
        """Publish a new version; returns its number (one more than the newest)."""

    @abstractmethod
    def versions(self) -> list[int]:
        """Published version numbers, ascending."""

    @abstractmethod
    def manifest(self, version: int) -> dict: ...

    @abstractmethod
    def blob(self, version: int, name: str) -> bytes: ...

    @abstractmethod
    def delete_version(self, version: int) -> None: ...

    @abstractmethod
    def mark_serving(self, holder: str, version: int) -> None:
        """Record that ``holder`` (an index pod) serves ``version`` now (a heartbeat)."""

    @abstractmethod
    def serving_marks(self) -> dict[str, tuple[int, float]]:
        """holder -> (version, when it last said so, epoch seconds)."""

    @abstractmethod
    def lease(self) -> Lease:
        """The trainer lease of this engine (see :mod:`recengine.lease`)."""

    def close(self) -> None:
        """Release connections (nothing to do for files)."""

    # --- shared policy -------------------------------------------------------------------------
    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        seqs = self.checkpoints()
        return (seqs[-1], self.get_checkpoint(seqs[-1])) if seqs else None

    def prune_checkpoints(self, keep: int) -> None:
        for seq in self.checkpoints()[:-keep]:
            self.delete_checkpoint(seq)

    def serving(self, max_age_s: float = SERVING_MARK_TTL_S) -> set[int]:
        """Versions some index pod said it serves within the last ``max_age_s`` seconds."""
        now = time.time()
        return {v for v, at in self.serving_marks().values() if now - at <= max_age_s}

    def prune_versions(self, keep: int,
                       protect: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Delete all but the newest ``keep`` versions, never one in ``protect`` and never one
        an index pod serves (see :meth:`mark_serving`)."""
        removed = []
        old = self.versions()[:-keep]
        if not old:
            return removed
        protect = set(protect) | self.serving()
        for v in old:
            if v not in protect:
                self.delete_version(v)
                removed.append(v)
        return removed

    def resolve(self, version: int | str) -> int:
        """A version number from a number or ``latest``."""
        if str(version) == "latest":
            vs = self.versions()
            if not vs:
                raise ArtifactError("no embedding version has been published yet")
            return vs[-1]
        return int(version)


class FileArtifactStore(ArtifactStore):
    """A directory: ``checkpoints/checkpoint-<seq>.bin`` and ``versions/<number>/<blob>``.

    Atomicity comes from rename(2): files and whole version directories are written under a
    temporary name in the same directory, then renamed into place.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.ckpt_dir = self.root / "checkpoints"
        self.ver_dir = self.root / "versions"
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            self.ver_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"artifact directory {self.root} is not usable: {exc}") from None

    def lease(self) -> Lease:
        return FileLease(self.root / "trainer.lease")

    def put_checkpoint(self, seq: int, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.ckpt_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.ckpt_dir / f"checkpoint-{seq:012d}.bin")

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
                (tmp / name).write_bytes(data)
            while True:
                number = (self.versions() or [0])[-1] + 1
                doc = {**manifest, "version": number}
                (tmp / "manifest.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
                try:
                    os.rename(tmp, self.ver_dir / f"{number:09d}")
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
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f"embedding version {version} does not exist") from None

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
        fd, tmp = tempfile.mkstemp(dir=marks, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump({"holder": holder, "version": int(version), "at": time.time()}, fh)
        os.replace(tmp, marks / f"{safe}.json")

    def serving_marks(self) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        marks = self.ver_dir / ".serving"
        if not marks.is_dir():
            return out
        for p in marks.glob("*.json"):
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError):
                continue  # a mark being replaced; the next renewal brings it back
            out[doc["holder"]] = (int(doc["version"]), float(doc["at"]))
        return out


def open_artifact_store(url: BackendURL, name: str = "recengine") -> ArtifactStore:
    """The artifact store a URL names (``name``: the engine's, prefixing Mongo collections)."""
    if url.scheme == "file":
        return FileArtifactStore(url.file_path)
    if url.scheme == "mongodb":
        from recengine.backends.mongo import GridFSArtifactStore

        return GridFSArtifactStore(url, name)
    raise ConfigError(f"artifacts URL {url.raw!r}: unsupported scheme {url.scheme!r}")
