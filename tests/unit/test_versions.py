"""Embedding versions: build, publish atomically, number, verify, prune."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from recengine.backends.files import FileArtifactStore
from recengine.errors import ArtifactError, ChecksumMismatch
from recengine.versions import BLOBS, build_blobs, checksum, choose_index_type, load_version


def _vectors(n_items: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_items, dim + 1)).astype(np.float32)


def _blobs(n_items: int, dim: int = 8, index_type: str = "auto",
           seed: int = 0) -> tuple[dict[str, bytes], dict]:
    rng = np.random.default_rng(seed + 1)
    ids = [f"item-{n}" for n in range(n_items)]
    vectors = _vectors(n_items, dim, seed)
    nb_ids = rng.integers(0, n_items, (n_items, 4)).astype(np.int32)
    nb_w = rng.random((n_items, 4)).astype(np.float32)
    popular = {"": [[ids[0], 5.0], [ids[1], 3.0]], "books": [[ids[1], 3.0]]}
    meta = {ids[0]: {"title": "First", "category": "books"}}
    return build_blobs(item_ids=ids, vectors=vectors, output_weights=np.ones(dim),
                       neighbour_ids=nb_ids, neighbour_weights=nb_w, popular=popular,
                       items_meta=meta, index_type=index_type,
                       quality={"recall_at_10": 0.25}, offsets={"file": "e.jsonl", "offset": 9},
                       extra={"blend": 0.3})


@pytest.fixture
def store(tmp_path: Path) -> FileArtifactStore:
    return FileArtifactStore(tmp_path / "artifacts")


def test_a_published_version_loads_back_exactly(store: FileArtifactStore) -> None:
    blobs, manifest = _blobs(50)
    number = store.publish(blobs, manifest)
    v = load_version(store, number)
    assert v.number == number == 1
    assert v.item_ids == [f"item-{n}" for n in range(50)]
    np.testing.assert_array_equal(v.vectors, _vectors(50, 8, 0))
    assert v.vectors.dtype == np.float32
    assert v.dim == 9
    np.testing.assert_array_equal(v.output_weights, np.ones(8, dtype=np.float32))
    assert v.neighbour_ids.shape == (50, 4) and v.neighbour_ids.dtype == np.int32
    assert v.popular == {"": [["item-0", 5.0], ["item-1", 3.0]], "books": [["item-1", 3.0]]}
    assert v.items_meta == {"item-0": {"title": "First", "category": "books"}}
    assert v.rows["item-7"] == 7
    m = v.manifest
    assert m["version"] == 1
    assert m["items"] == 50 and m["dim"] == 9
    assert m["index_type"] == "flat" and m["metric"] == "inner_product"
    assert m["checksum"] == checksum(blobs) == manifest["checksum"]
    assert m["quality"] == {"recall_at_10": 0.25}
    assert m["offsets"] == {"file": "e.jsonl", "offset": 9}
    assert m["blend"] == 0.3
    assert set(m["blobs"]) == set(BLOBS)


def test_a_flat_index_is_exact_inner_product_search(store: FileArtifactStore) -> None:
    v = load_version(store, store.publish(*_blobs(200)))
    q = np.random.default_rng(1).normal(size=(3, 9)).astype(np.float32)
    _, ids = v.index.search(q, 5)
    expected = np.argsort(-(q @ v.vectors.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)


def test_an_ivf_version_with_more_than_1000_items_round_trips(store: FileArtifactStore) -> None:
    blobs, manifest = _blobs(1500, dim=16, index_type="ivf")
    assert manifest["index_type"] == "ivf"
    v = load_version(store, store.publish(blobs, manifest))
    index = faiss.downcast_index(v.index)
    assert isinstance(index, faiss.IndexIVFFlat)
    assert index.ntotal == 1500
    assert index.nprobe >= 8  # the search setting survives serialisation
    q = np.random.default_rng(2).normal(size=(20, 17)).astype(np.float32)
    _, ids = v.index.search(q, 10)
    exact = np.argsort(-(q @ v.vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall > 0.5


def test_the_manifest_names_the_index_that_was_really_built() -> None:
    _, manifest = _blobs(200, index_type="ivf")  # too few items for IVF: a flat index
    assert manifest["index_type"] == "flat"


def test_auto_index_type_is_flat_for_small_catalogues_and_ivf_for_large_ones() -> None:
    assert choose_index_type(5_000) == "flat"
    assert choose_index_type(5_000_000) == "ivf"
    assert choose_index_type(10, "hnsw") == "hnsw"


def test_versions_are_numbered_one_two_three(store: FileArtifactStore) -> None:
    numbers = [store.publish(*_blobs(20, seed=s)) for s in range(3)]
    assert numbers == [1, 2, 3]
    assert store.versions() == [1, 2, 3]
    assert store.resolve("latest") == 3
    assert load_version(store, "latest").number == 3
    assert store.manifest(2)["version"] == 2


def test_latest_of_an_empty_store_is_an_artifact_error(store: FileArtifactStore) -> None:
    with pytest.raises(ArtifactError, match="no embedding version"):
        load_version(store, "latest")
    with pytest.raises(ArtifactError, match="version 4 does not exist"):
        load_version(store, 4)


def test_a_tampered_blob_is_refused(store: FileArtifactStore) -> None:
    number = store.publish(*_blobs(20))
    path = store.ver_dir / f"{number:09d}" / "vectors.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=f"embedding version {number}"):
        load_version(store, number)


def test_a_tampered_manifest_checksum_is_refused(store: FileArtifactStore) -> None:
    number = store.publish(*_blobs(20))
    path = store.ver_dir / f"{number:09d}" / "manifest.json"
    doc = json.loads(path.read_text())
    doc["checksum"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(ChecksumMismatch):
        load_version(store, number)


def test_pruning_keeps_the_newest_and_every_protected_version(store: FileArtifactStore) -> None:
    for s in range(5):
        store.publish(*_blobs(10, seed=s))
    removed = store.prune_versions(keep=2, protect={1})
    assert removed == [2, 3]
    assert store.versions() == [1, 4, 5]
    assert store.publish(*_blobs(10)) == 6  # numbers are never reused


def test_a_half_written_version_is_invisible(store: FileArtifactStore) -> None:
    store.publish(*_blobs(10))
    half = store.ver_dir / ".tmp-crashed"
    half.mkdir()
    (half / "vectors.npy").write_bytes(b"partial")
    assert store.versions() == [1]
    assert store.resolve("latest") == 1
    assert store.publish(*_blobs(10)) == 2


def test_a_failed_publish_leaves_nothing_behind(store: FileArtifactStore) -> None:
    blobs, manifest = _blobs(10)
    blobs["missing-dir/x.bin"] = b"cannot be written"
    with pytest.raises(OSError):
        store.publish(blobs, manifest)
    assert store.versions() == []
    assert list(store.ver_dir.iterdir()) == []


def test_checkpoints_are_kept_in_order_and_pruned(store: FileArtifactStore) -> None:
    assert store.latest_checkpoint() is None
    for seq in (3, 1, 2):
        store.put_checkpoint(seq, f"state {seq}".encode())
    assert store.checkpoints() == [1, 2, 3]
    assert store.latest_checkpoint() == (3, b"state 3")
    store.prune_checkpoints(keep=2)
    assert store.checkpoints() == [2, 3]
    assert [p.name for p in store.ckpt_dir.iterdir() if p.name.startswith(".tmp")] == []
