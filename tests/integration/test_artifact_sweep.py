"""The GridFS artifact store against a real MongoDB-wire server (FerretDB): a sweep removes
what a crashed writer left (versions stuck in ``writing`` or ``deleting``, blobs without a
version, chunks without a files document) and nothing a reader or a live writer needs; corrupt
manifests and lease documents are the store's error."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from bson.binary import Binary
from bson.objectid import ObjectId

from recengine.backends.mongo import GridFSArtifactStore, MongoLease
from recengine.config import parse_url
from recengine.errors import ArtifactError
from recengine.versions import build_blobs, load_version

pytestmark = pytest.mark.integration
AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def store(mongo_url: str) -> Iterator[GridFSArtifactStore]:
    s = GridFSArtifactStore(parse_url("artifacts", mongo_url), f"t{uuid.uuid4().hex[:10]}")
    yield s
    s.close()


def _publish(store: GridFSArtifactStore) -> int:
    blobs, manifest = build_blobs(
        item_ids=["a", "b"], vectors=np.ones((2, 3), dtype=np.float32),
        output_weights=np.ones(3, dtype=np.float32),
        neighbour_ids=np.full((2, 1), -1, dtype=np.int32),
        neighbour_weights=np.zeros((2, 1), dtype=np.float32), popular={"": [("a", 1.0)]},
        items_meta={}, index_type="flat", quality={}, offsets={}, extra={})
    return store.publish(blobs, manifest)


def _blob(store: GridFSArtifactStore, version: int, name: str, *, old: bool) -> ObjectId:
    """A blob file of ``version`` as a crashed publisher left it."""
    file_id = store.fs.upload_from_stream(f"v{version:09d}/{name}", b"x" * 1000,
                                          metadata={"kind": "blob", "version": version})
    if old:
        store.files.update_one({"_id": file_id}, {"$set": {"uploadDate": AN_HOUR_AGO}})
    return file_id


def test_sweep_removes_what_a_crash_left_and_keeps_everything_live(
        store: GridFSArtifactStore) -> None:
    good = _publish(store)
    store.put_checkpoint(5, b"checkpoint bytes")
    # A publisher that died mid-upload an hour ago, and one publishing right now.
    store.versions_coll.insert_one({"_id": 101, "state": "writing",
                                    "started": time.time() - 3600})
    dead_blob = _blob(store, 101, "vectors.npy", old=True)
    store.versions_coll.insert_one({"_id": 102, "state": "writing", "started": time.time()})
    live_blob = _blob(store, 102, "vectors.npy", old=False)
    # A delete that died between hiding the version and removing its document.
    store.versions_coll.insert_one({"_id": 103, "state": "deleting", "started": time.time()})
    _blob(store, 103, "vectors.npy", old=False)
    # A blob whose version document is gone, and chunks whose files document never came.
    stray = _blob(store, 104, "items.json", old=True)
    old_upload = ObjectId.from_datetime(AN_HOUR_AGO)
    new_upload = ObjectId()
    for files_id in (old_upload, new_upload):
        store.chunks.insert_one({"files_id": files_id, "n": 0, "data": Binary(b"y" * 100)})

    assert store.sweep(600) == 4  # versions 101 and 103, the stray blob, the old chunks

    assert store.versions() == [good]
    assert load_version(store, good).item_ids == ["a", "b"]
    assert store.get_checkpoint(5) == b"checkpoint bytes"
    left = {d["_id"]: d["state"] for d in store.versions_coll.find({})}
    assert left == {good: "complete", 102: "writing"}
    file_ids = {d["_id"] for d in store.files.find({})}
    assert live_blob in file_ids and dead_blob not in file_ids and stray not in file_ids
    chunk_owners = set(store.chunks.distinct("files_id"))
    assert new_upload in chunk_owners and old_upload not in chunk_owners
    assert dead_blob not in chunk_owners
    assert store.sweep(600) == 0  # idempotent


def test_a_corrupt_manifest_is_an_artifact_error(store: GridFSArtifactStore) -> None:
    number = _publish(store)
    store.versions_coll.update_one({"_id": number}, {"$set": {"manifest": "{torn"}})
    with pytest.raises(ArtifactError, match=rf"version {number}: manifest in .* is corrupt"):
        store.manifest(number)


def test_a_corrupt_lease_document_is_an_artifact_error(mongo_url: str) -> None:
    lease = MongoLease(parse_url("artifacts", mongo_url), f"t{uuid.uuid4().hex[:10]}")
    try:
        lease.coll.insert_one({"_id": MongoLease.KEY, "holder": "a"})
        with pytest.raises(ArtifactError, match=r"trainer lease .* is corrupt"):
            lease.current()
    finally:
        lease.close()
