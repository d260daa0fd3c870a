"""Artifact stores: where checkpoints and embedding versions live.

The interface is what the trainer, index service, API and operator see; the backends (a
directory, GridFS) live in :mod:`recengine.backends`, chosen by URL scheme in
:func:`recengine.backends.registry.open_artifact_store`. An embedding version is published
atomically from a reader's point of view: it becomes visible (listed, loadable) only once every
blob is written, and its blobs are checked against the manifest's :func:`checksum`.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from typing import Self

from recengine.config import BackendURL
from recengine.errors import ArtifactError

#: An index pod renews its serving mark every few minutes; a mark older than this is from a
#: pod that is gone, and no longer keeps its version from being pruned.
SERVING_MARK_TTL_S = 3600.0


def checksum(blobs: dict[str, bytes]) -> str:
    """SHA-256 over the blobs' names and SHA-256 digests, in name order."""
    h = hashlib.sha256()
    for name in sorted(blobs):
        h.update(name.encode())
        h.update(hashlib.sha256(blobs[name]).digest())
    return "sha256:" + h.hexdigest()


def parse_manifest(version: int, text: bytes | str, where: str) -> dict:
    """A stored manifest's JSON as a dict; ArtifactError naming the version and ``where``
    it is stored when it is torn or not an object (never a bare ValueError)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError too
        raise ArtifactError(f"embedding version {version}: manifest {where} is corrupt: "
                            f"{exc}") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"embedding version {version}: manifest {where} is corrupt: "
                            f"a JSON {type(doc).__name__}, not an object")
    return doc


class ArtifactStore(ABC):
    """Checkpoints (opaque bytes, numbered by sequence) and numbered, immutable versions."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        """The store ``url`` names, for engine ``name`` (the prefix of its collections)."""

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

    def sweep(self, older_than_s: float) -> int:
        """Remove what a crashed writer left behind (half-written or half-deleted versions,
        temporary files, orphaned chunks) that is older than ``older_than_s``; returns how
        many were removed. Only the trainer lease holder writes, so it sweeps: at start and
        after each publish, with its lease's TTL as the age (a publish takes less)."""
        return 0

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


