"""MongoDB backends (pymongo): the user store and the GridFS artifact store.

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

import gridfs
import numpy as np
from bson.binary import Binary
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from recengine.artifacts import ArtifactStore
from recengine.config import BackendURL
from recengine.errors import ArtifactError, BackendUnavailable
from recengine.stores import UserRecord, UserStore

TIMEOUT_MS = 2000


def connect(url: BackendURL, timeout_ms: int = TIMEOUT_MS) -> tuple[MongoClient, str]:
    """A client with bounded timeouts and the database named by the URL's path."""
    client: MongoClient = MongoClient(
        url.raw, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms, retryWrites=False)
    return client, (url.path.strip("/") or "recengine")


class MongoUserStore(UserStore):
    """One document per user: ``{_id, vector (float32 bytes), events, recent: [{i, t}],
    updated}`` (recent items as sub-documents: nested arrays are not portable)."""

    def __init__(self, url: BackendURL, name: str, timeout_ms: int = TIMEOUT_MS) -> None:
        self.client, db = connect(url, timeout_ms)
        self.db = self.client[db]
        self.coll = self.db[f"{name}_users"]
        try:
            self.coll.create_index([("updated", ASCENDING)])
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB at {url.host}: {exc}") from None

    def upsert(self, records: Sequence[UserRecord]) -> None:
        if not records:
            return
        updates = [{"q": {"_id": r.user_id}, "upsert": True, "u": {"$set": {
            "vector": Binary(np.asarray(r.vector, dtype=np.float32).tobytes()),
            "events": int(r.events), "recent": [{"i": i, "t": float(t)} for i, t in r.recent],
            "updated": float(r.updated)}}} for r in records]
        try:
            # The plain update command (one round trip per 1000 users): pymongo's bulk_write
            # result parsing needs fields that MongoDB-wire servers such as FerretDB omit.
            for start in range(0, len(updates), 1000):
                res = self.db.command("update", self.coll.name,
                                      updates=updates[start:start + 1000], ordered=False)
                if res.get("writeErrors"):
                    raise BackendUnavailable(
                        f"MongoDB user store: {res['writeErrors'][0].get('errmsg')}")
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB user store: {exc}") from None

    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        if not user_ids:
            return {}
        try:
            docs = list(self.coll.find({"_id": {"$in": list(user_ids)}}))
        except PyMongoError as exc:
            raise BackendUnavailable(f"MongoDB user store: {exc}") from None
        return {d["_id"]: UserRecord(d["_id"], np.frombuffer(d["vector"], dtype=np.float32),
                                     int(d.get("events", 0)),
                                     [(x["i"], float(x["t"])) for x in d.get("recent", [])],
                                     float(d.get("updated", 0.0))) for d in docs}

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
        self.versions_coll = db[f"{name}_versions"]
        self.host = url.host

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
        from recengine.versions import checksum

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
        return json.loads(doc["manifest"])

    def blob(self, version: int, name: str) -> bytes:
        try:
            return self._get(f"v{version:09d}/{name}")
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def delete_version(self, version: int) -> None:
        try:
            # Hide it first, then remove its blobs: a reader never sees a half-deleted version.
            self.versions_coll.update_one({"_id": version}, {"$set": {"state": "deleting"}})
            for doc in self.files.find({"metadata.kind": "blob", "metadata.version": version},
                                       {"_id": 1}):
                self.fs.delete(doc["_id"])
            self.versions_coll.delete_one({"_id": version})
        except PyMongoError as exc:
            raise self._wrap(exc) from None

    def close(self) -> None:
        self.client.close()
