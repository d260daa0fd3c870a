"""Embedding versions: build one (vectors + faiss index + manifest), load and verify one.

A version holds everything an index pod needs to serve on its own:

==================  ========================================================================
``vectors.npy``     item vectors ``[q_i, b_i]`` (float32, n x (dim + 1)), rows in id order
``item_ids.json``   item ids in row order
``output.npy``      the GMF output weights ``w`` (already folded into user vectors)
``index.faiss``     a serialized faiss inner-product index over ``vectors``
``neighbours.npz``  item-to-item neighbours (ids int32 n x K, cosine weights float32 n x K)
``popular.json``    "popular now": overall and per category, ``[[item_id, score], ...]``
``items.json``      item metadata by id (title, category, ...)
``manifest.json``   version, created, items, dim, index type, checksum, quality, offsets
==================  ========================================================================

The checksum is the SHA-256 over the blobs' names and SHA-256 digests in name order; a loader
refuses a version whose blobs do not match it.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from recengine.artifacts import ArtifactStore, checksum
from recengine.errors import ChecksumMismatch

BLOBS = ("vectors.npy", "item_ids.json", "output.npy", "index.faiss", "neighbours.npz",
         "popular.json", "items.json")
FLAT_MAX_ITEMS = 50_000
#: Below this many items every index is flat: exact, and an ANN index would gain nothing.
MIN_ANN_ITEMS = 1000


def choose_index_type(n_items: int, configured: str = "auto") -> str:
    """Flat (exact) up to ``FLAT_MAX_ITEMS``, IVF above. Measured on one thread: Flat takes
    1 ms per query at 100k items; IVF 0.14 ms at 100k and 0.7 ms at 1M (built in 30 s) with
    recall@10 of 1.0 against exact search on clustered vectors; HNSW searches as fast but
    builds 4x slower than IVF."""
    if configured != "auto":
        return configured
    return "flat" if n_items <= FLAT_MAX_ITEMS else "ivf"


def build_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    """A faiss inner-product index over ``vectors`` of the given kind."""
    n, d = vectors.shape
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "flat" or n < MIN_ANN_ITEMS:
        index: faiss.Index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    elif kind == "ivf":
        nlist = int(min(max(16, 4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = x[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        index.train(sample)
        index.nprobe = max(8, nlist // 32)
    else:
        raise ValueError(f"unknown index type {kind!r}")
    index.add(x)
    return index


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def build_blobs(*, item_ids: list[str], vectors: np.ndarray, output_weights: np.ndarray,
                neighbour_ids: np.ndarray, neighbour_weights: np.ndarray,
                popular: dict[str, list[tuple[str, float]]], items_meta: dict[str, dict],
                index_type: str = "auto", quality: dict | None = None,
                offsets: dict | None = None, extra: dict | None = None) -> tuple[dict, dict]:
    """The blobs and manifest of a version (its number is assigned when it is published)."""
    t0 = time.perf_counter()
    kind = choose_index_type(len(item_ids), index_type)
    if len(item_ids) < MIN_ANN_ITEMS:
        kind = "flat"  # what build_index builds: the manifest must say so
    index = build_index(vectors, kind)
    nb = io.BytesIO()
    np.savez(nb, ids=neighbour_ids.astype(np.int32), weights=neighbour_weights.astype(np.float32))
    blobs = {
        "vectors.npy": _npy(vectors.astype(np.float32)),
        "item_ids.json": json.dumps(item_ids).encode(),
        "output.npy": _npy(output_weights.astype(np.float32)),
        "index.faiss": faiss.serialize_index(index).tobytes(),
        "neighbours.npz": nb.getvalue(),
        "popular.json": json.dumps(popular).encode(),
        "items.json": json.dumps(items_meta).encode(),
    }
    manifest = {
        "created": time.time(),
        "items": len(item_ids),
        "dim": int(vectors.shape[1]),
        "index_type": kind,
        "metric": "inner_product",
        "checksum": checksum(blobs),
        "blobs": {k: len(v) for k, v in blobs.items()},
        "quality": quality or {},
        "offsets": offsets or {},
        "build_seconds": round(time.perf_counter() - t0, 3),
        **(extra or {}),
    }
    return blobs, manifest


@dataclass
class EmbeddingVersion:
    """A loaded, verified version, ready to search."""

    number: int
    manifest: dict
    item_ids: list[str]
    vectors: np.ndarray
    output_weights: np.ndarray
    index: faiss.Index
    neighbour_ids: np.ndarray
    neighbour_weights: np.ndarray
    popular: dict[str, list[list]]
    items_meta: dict[str, dict]

    def __post_init__(self) -> None:
        self.rows = {item: r for r, item in enumerate(self.item_ids)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_version(store: ArtifactStore, version: int | str) -> EmbeddingVersion:
    """Load a version by number (or ``latest``) and verify its checksum."""
    number = store.resolve(version)
    manifest = store.manifest(number)
    blobs = {name: store.blob(number, name) for name in BLOBS}
    actual = checksum(blobs)
    if actual != manifest.get("checksum"):
        raise ChecksumMismatch(
            f"embedding version {number}: checksum {actual} does not match manifest "
            f"{manifest.get('checksum')}")
    nb = np.load(io.BytesIO(blobs["neighbours.npz"]), allow_pickle=False)
    index = faiss.deserialize_index(np.frombuffer(blobs["index.faiss"], dtype=np.uint8))
    return EmbeddingVersion(
        number=number,
        manifest=manifest,
        item_ids=json.loads(blobs["item_ids.json"]),
        vectors=np.load(io.BytesIO(blobs["vectors.npy"]), allow_pickle=False),
        output_weights=np.load(io.BytesIO(blobs["output.npy"]), allow_pickle=False),
        index=index,
        neighbour_ids=nb["ids"],
        neighbour_weights=nb["weights"],
        popular=json.loads(blobs["popular.json"]),
        items_meta=json.loads(blobs["items.json"]),
    )
