"""MongoDB backends (pymongo): the user store, the GridFS artifact store and its trainer lease.

Only plain CRUD, indexes, bulk writes and GridFS are used, so the same code runs on MongoDB
and on MongoDB-wire servers such as FerretDB (what the tests use). Every call has a timeout:
a server that is down raises :class:`BackendUnavailable` quickly instead of hanging.

Publishing a version is atomic from a reader's view: a ``versions`` document is inserted in
state ``writing`` (its ``_id`` is the version number, so two publishers can never share one),
the blobs are uploaded to GridFS, read back and checked against the manifest's checksum, and
only then is the document switched to ``complete`` with its manifest. Readers list only
complete versions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Self

import gridfs
import numpy as np
import pymongo
from bson.binary import Binary
from bson.objectid import ObjectId
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from recengine.artifacts import ArtifactStore, checksum, parse_manifest
from recengine.config import BackendURL
from recengine.errors import ArtifactError, BackendUnavailable
from recengine.lease import Lease, LeaseState
from recengine.stores import UserRecord, UserStore

#: Writes are bulk and off the request path (the trainer): generous, so a slow server is
#: waited for rather than retried. Reads serve requests: short, so an outage is noticed fast.
WRITE_TIMEOUT_MS = 30_000
READ_TIMEOUT_S = 0.5


def connect(url: BackendURL, timeout_ms: int = WRITE_TIMEOUT_MS) -> tuple[MongoClient, str]:
    """A client with bounded timeouts and the database named by the URL's path."""
    client: MongoClient = MongoClient(
        url.raw, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms, retryWrites=False)
    return client, (url.path.strip("/") or "recengine")


class MongoUserStore(UserStore):
    """One document per user: ``{_id, vector (float32 bytes), row, events, recent: [{i, t}],
    updated}`` (recent items as sub-documents: nested arrays are not portable).

    Indexes: ``_id`` (every read is by user id) and ``updated`` (what changed lately, for
    operators and tools); ``row`` is stored for joins with the model, not queried."""

    def __init__(self, url: BackendURL, name: str, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.client, db = connect(url)
        self.read_timeout_s = read_timeout_s
        self.db = self.client[db]
        self.coll = self.db[f"{name}_users"]
        try:
            self.coll.create_index([("updated", ASCENDING)])
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB at {url.host}: {exc}") from None

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url, name)

    def upsert(self, records: Sequence[UserRecord]) -> None:
        """Replace the users' documents: delete them, then insert them, 1000 at a time.

        Bulk upserts are the natural way on MongoDB, but MongoDB-wire servers such as
        FerretDB on SQLite take ~15 ms per upsert against ~1 ms per document for a delete plus
        an insert (measured), so a flush of thousands of users would fall behind the stream.
        A reader between the two sees the user missing for a moment and falls back (the cache
        usually answers first); a crash between them is repaired because the trainer rewrites
        every user after a restart (``Trainer.restore``).
        """
        if not records:
            return
        latest = {r.user_id: r for r in records}  # one document per user
        docs = [{"_id": r.user_id,
                 "vector": Binary(np.asarray(r.vector, dtype=np.float32).tobytes()),
                 "row": int(r.row), "events": int(r.events),
                 "recent": [{"i": i, "t": float(t)} for i, t in r.recent],
                 "updated": float(r.updated)} for r in latest.values()]
        try:
            for start in range(0, len(docs), 1000):
                chunk = docs[start:start + 1000]
                self.coll.delete_many({"_id": {"$in": [d["_id"] for d in chunk]}})
                self.coll.insert_many(chunk, ordered=False)
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB user store: {exc}") from None

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        if not user_ids:
            return {}
        ids = list(dict.fromkeys(user_ids))
        try:
            with pymongo.timeout(self.read_timeout_s):
                if len(ids) <= 20:
                    # Equality on _id uses the primary key on every server; some (FerretDB)
                    # scan the collection for $in.
                    docs = [d for d in (self.coll.find_one({"_id": i}) for i in ids) if d]
                else:
                    docs = list(self.coll.find({"_id": {"$in": ids}}))
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB user store: {exc}") from None
        return {d["_id"]: UserRecord(d["_id"], np.frombuffer(d["vector"], dtype=np.float32),
                                     int(d.get("events", 0)),
                                     [(x["i"], float(x["t"])) for x in d.get("recent", [])],
                                     float(d.get("updated", 0.0)), int(d.get("row", -1)))
                for d in docs}

    def count(self) -> int:
        try:
            return int(self.coll.count_documents({}))
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB user store: {exc}") from None

    def close(self) -> None:
        self.client.close()


class GridFSArtifactStore(ArtifactStore):
    """Checkpoints and versions in GridFS bucket ``<name>_artifacts``; manifests in
    ``<name>_versions``."""

    def __init__(self, url: BackendURL, name: str, timeout_ms: int = 10_000) -> None:
        self.client, db_name = connect(url, timeout_ms)
        db = self.client[db_name]
        self.fs = gridfs.GridFSBucket(db, bucket_name=f"{name}_artifacts")
        self.files = db[f"{name}_artifacts.files"]
        self.chunks = db[f"{name}_artifacts.chunks"]
        self.versions_coll = db[f"{name}_versions"]
        self.serving_coll = db[f"{name}_serving"]
        self.host = url.host

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url, name)

    def _wrap(self, exc: PyMongoError) -> BackendUnavailable:
        return BackendUnavailable(f"MongoDB artifact store at {self.host}: {exc}")

    def _put(self, filename: str, data: bytes, metadata: dict) -> None:
        self.fs.upload_from_stream(filename, data, metadata=metadata)

    def _get(self, filename: str) -> bytes:
        try:
            return self.fs.open_download_stream_by_name(filename).read()
        except gridfs.errors.NoFile:
            raise ArtifactError(f"no artifact {filename!r}") from None

    def _delete(self, filename: str) -> None:
        for doc in self.files.find({"filename": filename}, {"_id": 1}):
            self.fs.delete(doc["_id"])

    # --- checkpoints ---------------------------------------------------------------------------
    def put_checkpoint(self, seq: int, data: bytes) -> None:
        try:
            # A checkpoint is visible once its files document exists, which GridFS writes
            # after the last chunk: a crash mid-upload leaves only orphan chunks.
            self._put(f"checkpoint-{seq:012d}", data, {"kind": "checkpoint", "seq": seq})
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def checkpoints(self) -> list[int]:
        try:
            docs = self.files.find({"metadata.kind": "checkpoint"}, {"metadata.seq": 1})
            return sorted({int(d["metadata"]["seq"]) for d in docs})
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def get_checkpoint(self, seq: int) -> bytes:
        try:
            doc = self.files.find_one({"metadata.kind": "checkpoint", "metadata.seq": seq},
                                      sort=[("uploadDate", -1)])
            if doc is None:
                raise ArtifactError(f"no checkpoint {seq}")
            return self.fs.open_download_stream(doc["_id"]).read()
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def delete_checkpoint(self, seq: int) -> None:
        try:
            self._delete(f"checkpoint-{seq:012d}")
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    # --- versions ------------------------------------------------------------------------------
    def publish(self, blobs: dict[str, bytes], manifest: dict) -> int:
        try:
            while True:
                last = self.versions_coll.find_one(sort=[("_id", -1)])
                number = (int(last["_id"]) if last else 0) + 1
                try:
                    self.versions_coll.insert_one({"_id": number, "state": "writing",
                                                   "started": time.time()})
                    break
                except DuplicateKeyError:
                    continue
            for name, data in blobs.items():
                self._put(f"v{number:09d}/{name}", data, {"kind": "blob", "version": number})
            readback = {name: self._get(f"v{number:09d}/{name}") for name in blobs}
            if checksum(readback) != manifest["checksum"]:
                raise ArtifactError(f"version {number}: blobs read back do not match checksum")
            self.versions_coll.update_one(
                {"_id": number},
                # As JSON text: manifest keys hold dots (blob names), which some servers refuse.
                {"$set": {"state": "complete",
                          "manifest": json.dumps({**manifest, "version": number})}})
            return number
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def versions(self) -> list[int]:
        try:
            return sorted(int(d["_id"]) for d in
                          self.versions_coll.find({"state": "complete"}, {"_id": 1}))
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def manifest(self, version: int) -> dict:
        try:
            doc = self.versions_coll.find_one({"_id": version, "state": "complete"})
        except PyMongoError as exc:
            raise self._wrap(exc) from None
        if doc is None:
            raise ArtifactError(f"embedding version {version} does not exist")
        text = doc.get("manifest")
        where = f"in {self.versions_coll.name}"
        if not isinstance(text, str | bytes):
            raise ArtifactError(f"embedding version {version}: manifest {where} is corrupt: "
                                "missing")
        return parse_manifest(version, text, where)

    def blob(self, version: int, name: str) -> bytes:
        try:
            return self._get(f"v{version:09d}/{name}")
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def delete_version(self, version: int) -> None:
        try:
            # Hide it first, then remove its blobs: a reader never sees a half-deleted version.
            self.versions_coll.update_one({"_id": version}, {"$set": {"state": "deleting"}})
            self._remove_version(version)
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def _remove_version(self, version: int) -> None:
        """Delete a hidden (``writing`` or ``deleting``) version's blobs, then its document."""
        for doc in self.files.find({"metadata.kind": "blob", "metadata.version": version},
                                   {"_id": 1}):
            self.fs.delete(doc["_id"])
        self.versions_coll.delete_one({"_id": version})

    def sweep(self, older_than_s: float) -> int:
        """Remove what a crash left: versions stuck in ``deleting`` (any age: they are hidden
        already) or in ``writing`` for longer than ``older_than_s``, with their blobs; blobs
        of versions that have no document; and chunks whose files document never came (an
        upload cut short), by the age in their ``files_id``."""
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            for doc in self.versions_coll.find(
                    {"$or": [{"state": "deleting"},
                             {"state": "writing", "started": {"$lt": cutoff}}]}, {"_id": 1}):
                self._remove_version(int(doc["_id"]))
                removed += 1
            known = {d["_id"] for d in self.versions_coll.find({}, {"_id": 1})}
            for doc in self.files.find({"metadata.kind": "blob"},
                                       {"_id": 1, "metadata.version": 1, "uploadDate": 1}):
                if (doc["metadata"]["version"] not in known
                        and doc["uploadDate"].replace(tzinfo=UTC).timestamp() < cutoff):
                    self.fs.delete(doc["_id"])
                    removed += 1
            files = {d["_id"] for d in self.files.find({}, {"_id": 1})}
            for files_id in self.chunks.distinct("files_id"):
                if (files_id not in files and isinstance(files_id, ObjectId)
                        and files_id.generation_time.timestamp() < cutoff):
                    self.chunks.delete_many({"files_id": files_id})
                    removed += 1
        except PyMongoError as exc:
            raise self._wrap(exc) from None
        return removed

    def mark_serving(self, holder: str, version: int) -> None:
        try:
            self.serving_coll.delete_one({"_id": holder})
            self.serving_coll.insert_one({"_id": holder, "version": int(version),
                                          "at": time.time()})
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def serving_marks(self) -> dict[str, tuple[int, float]]:
        try:
            return {d["_id"]: (int(d["version"]), float(d["at"]))
                    for d in self.serving_coll.find({})}
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def close(self) -> None:
        self.client.close()


class MongoLease(Lease):
    """The trainer lease as one document ``{_id: "trainer", holder, epoch, expires}`` in
    ``<name>_leases``, beside the artifacts it guards, changed only by conditional
    single-document updates (atomic on MongoDB and FerretDB alike)."""

    KEY = "trainer"

    def __init__(self, url: BackendURL, name: str, timeout_ms: int = 10_000) -> None:
        self.client, db = connect(url, timeout_ms)
        self.coll = self.client[db][f"{name}_leases"]
        self.host = url.host

    @classmethod
    def from_url(cls, url: BackendURL, name: str) -> Self:
        return cls(url, name)

    def close(self) -> None:
        self.client.close()

    def _wrap(self, exc: PyMongoError) -> BackendUnavailable:
        return BackendUnavailable(f"MongoDB trainer lease at {self.host}: {exc}")

    def acquire(self, holder: str, ttl_s: float) -> int | None:
        now = time.time()
        try:
            doc = self.coll.find_one_and_update(
                {"_id": self.KEY, "$or": [{"expires": {"$lt": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "expires": now + ttl_s}, "$inc": {"epoch": 1}},
                return_document=pymongo.ReturnDocument.AFTER)
            if doc is not None:
                return int(doc["epoch"])
            try:
                self.coll.insert_one({"_id": self.KEY, "holder": holder, "epoch": 1,
                                      "expires": now + ttl_s})
                return 1
            except DuplicateKeyError:  # someone holds it (or just took it)
                return None
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def renew(self, holder: str, epoch: int, ttl_s: float) -> bool:
        try:
            doc = self.coll.find_one_and_update(
                {"_id": self.KEY, "holder": holder, "epoch": epoch},
                {"$set": {"expires": time.time() + ttl_s}})
        except PyMongoError as exc:
            raise self._wrap(exc) from None
        return doc is not None

    def release(self, holder: str, epoch: int) -> None:
        try:
            self.coll.update_one({"_id": self.KEY, "holder": holder, "epoch": epoch},
                                 {"$set": {"expires": 0.0}})
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def current(self) -> LeaseState | None:
        try:
            doc = self.coll.find_one({"_id": self.KEY})
        except PyMongoError as exc:
            raise self._wrap(exc) from None
        if doc is None:
            return None
        try:
            return LeaseState(str(doc["holder"]), int(doc["epoch"]), float(doc["expires"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"trainer lease in {self.coll.name} is corrupt "
                                f"({type(exc).__name__}: {exc})") from None
