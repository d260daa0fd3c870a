"""Durability of the file backends: fsync of blobs, manifests and their directories, no
temporary file left on error, short writes completed, corrupt JSON as the store's error."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest
from support.planted_catalog import publish_catalog

from recengine.backends import files
from recengine.backends.files import FileArtifactStore, FileEventSink, FileLease
from recengine.errors import ArtifactError
from recengine.events import Event, parse_json

T0 = 1_700_000_000.0


def _version(store: FileArtifactStore) -> int:
    """Publish the planted catalogue's version into ``store``; its number."""
    return publish_catalog(store.root.parent).version


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was fsynced, by path (a directory or a file)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    return seen


def test_a_version_is_fsynced_blob_by_blob_then_its_directory_and_the_versions_directory(
        tmp_path: Path, synced: list[str]) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    number = _version(store)
    final = store.ver_dir / f"{number:09d}"
    names = sorted(p.name for p in final.iterdir())
    tmp_dir = Path(synced[0]).parent
    assert sorted(Path(p).name for p in synced if Path(p).parent == tmp_dir) == names
    assert str(tmp_dir) in synced  # the version's own directory, before the rename
    assert synced[-1] == str(store.ver_dir)  # the rename, after it


def test_a_checkpoint_and_its_directory_are_fsynced(tmp_path: Path, synced: list[str]) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    store.put_checkpoint(7, b"state")
    assert synced[-1] == str(store.ckpt_dir)
    assert store.get_checkpoint(7) == b"state"


def _disk_full(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
    real = os.write
    budget = [after]

    def write(fd: int, data: bytes) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data)[: budget[0]])
        budget[0] -= n
        return n

    monkeypatch.setattr(files.os, "write", write)


def test_a_full_disk_leaves_no_temporary_file_and_the_old_checkpoint_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    store.put_checkpoint(1, b"old")
    _disk_full(monkeypatch, after=5)
    with pytest.raises(OSError, match="No space"):
        store.put_checkpoint(1, b"new and longer than five bytes")
    with pytest.raises(OSError, match="No space"):
        _version(store)
    monkeypatch.undo()
    assert store.get_checkpoint(1) == b"old"
    assert [p.name for p in store.ckpt_dir.iterdir()] == ["checkpoint-000000000001.bin"]
    assert list(store.ver_dir.iterdir()) == [] and store.versions() == []


def test_the_event_sink_completes_short_writes(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    calls = []

    def short(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real(fd, bytes(data)[:7])

    monkeypatch.setattr(files.os, "write", short)
    sink = FileEventSink(tmp_path / "events.jsonl")
    events = [Event(f"u{n}", "i1", "view", T0 + n) for n in range(20)]
    sink.append(events)
    monkeypatch.undo()
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert [parse_json(x) for x in lines] == events
    assert len(calls) > 20


@pytest.mark.parametrize("text", ["{not json", '{"holder": "a"}', "[]", '{"holder": "a", '
                                  '"epoch": "x", "expires": 1}', "\udcff"])
def test_a_corrupt_lease_is_an_artifact_error_naming_the_file(tmp_path: Path, text: str) -> None:
    lease = FileLease(tmp_path / "trainer.lease")
    lease.path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ArtifactError, match=r"trainer\.lease is corrupt"):
        lease.acquire("me", 30)
    with pytest.raises(ArtifactError, match=r"trainer\.lease is corrupt"):
        lease.current()


def test_a_lease_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    lease = FileLease(tmp_path / "trainer.lease")
    assert lease.acquire("me", 30) == 1
    assert lease.renew("me", 1, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer.lease", "trainer.lease.lock"]


@pytest.mark.parametrize("text", [b"{torn", b"[1, 2]", b"\xff\xfe"])
def test_a_corrupt_manifest_is_an_artifact_error(tmp_path: Path, text: bytes) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    number = _version(store)
    (store.ver_dir / f"{number:09d}" / "manifest.json").write_bytes(text)
    with pytest.raises(ArtifactError, match=rf"version {number}: manifest .* is corrupt"):
        store.manifest(number)


def test_corrupt_serving_marks_are_skipped(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    store.mark_serving("pod-a", 1)
    (store.ver_dir / ".serving" / "pod-b.json").write_text('{"holder": "pod-b"}')
    (store.ver_dir / ".serving" / "pod-c.json").write_text("{torn")
    assert set(store.serving_marks()) == {"pod-a"}


def test_sweep_removes_old_temporary_files_and_keeps_recent_ones(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    old_file = store.ckpt_dir / ".tmp-crashed"
    old_file.write_bytes(b"x")
    old_dir = store.ver_dir / ".tmp-half-version"
    old_dir.mkdir()
    (old_dir / "vectors.npy").write_bytes(b"x")
    fresh = store.ckpt_dir / ".tmp-being-written"
    fresh.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    for p in (old_file, old_dir):
        os.utime(p, (an_hour_ago, an_hour_ago))
    store.put_checkpoint(1, b"kept")
    number = _version(store)
    assert store.sweep(600) == 2
    assert not old_file.exists() and not old_dir.exists() and fresh.exists()
    assert store.checkpoints() == [1] and store.versions() == [number]
    assert json.loads((store.ver_dir / f"{number:09d}" / "manifest.json").read_text())
