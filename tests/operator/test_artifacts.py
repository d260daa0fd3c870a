"""Reading published versions through recengine's artifact store (a real file store)."""

from __future__ import annotations

import pytest
from support.kube_objects import manifest

from recengine.backends.files import FileArtifactStore
from recengine.backends.registry import open_artifact_store
from recengine.errors import ConfigError
from recengine_operator.artifacts import Catalogs, store_address


class CountingStore(FileArtifactStore):
    manifest_reads = 0

    def manifest(self, version: int) -> dict:
        CountingStore.manifest_reads += 1
        return super().manifest(version)


def publish(store: FileArtifactStore, recall: float) -> int:
    m = manifest(0, recall)
    del m["version"]
    return store.publish({"item_ids.json": b"[]"}, m)


def test_catalog_lists_versions_and_their_manifests(tmp_path):
    store = FileArtifactStore(tmp_path)
    publish(store, 0.2)
    publish(store, 0.3)
    cat = Catalogs().load(f"file://{tmp_path}", "recengine")
    assert list(cat.versions) == [1, 2]
    assert cat.manifest(2)["quality"]["recall_at_10"] == 0.3
    assert cat.manifest(3) is None


def test_manifests_are_read_once_and_pruned_versions_forgotten(tmp_path):
    store = FileArtifactStore(tmp_path)
    for recall in (0.1, 0.2):
        publish(store, recall)
    CountingStore.manifest_reads = 0
    catalogs = Catalogs(lambda url, name: CountingStore(url.file_path))
    catalogs.load(f"file://{tmp_path}", "x")
    catalogs.load(f"file://{tmp_path}", "x")
    assert CountingStore.manifest_reads == 2
    store.delete_version(1)
    publish(store, 0.3)
    cat = catalogs.load(f"file://{tmp_path}", "x")
    assert list(cat.versions) == [2, 3] and CountingStore.manifest_reads == 3


def test_an_unsupported_url_is_an_error():
    with pytest.raises(ConfigError):
        Catalogs(open_artifact_store).load("redis://cache:6379", "x")


def test_store_address_comes_from_the_secret():
    assert store_address({"RECENGINE_ARTIFACTS_URL": "file:///a"}, "s") == ("file:///a",
                                                                           "recengine")
    assert store_address({"RECENGINE_ARTIFACTS_URL": "mongodb://m/db", "RECENGINE_NAME": "movies"},
                         "s") == ("mongodb://m/db", "movies")
    with pytest.raises(ValueError, match="does not exist"):
        store_address(None, "s")
    with pytest.raises(ValueError, match="RECENGINE_ARTIFACTS_URL"):
        store_address({"OTHER": "x"}, "s")
