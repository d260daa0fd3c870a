"""A small, planted embedding version published into a temp data dir (for the app tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recengine.backends.files import FileArtifactStore
from recengine.config import Settings
from recengine.versions import build_blobs

N_ITEMS = 40
DIM = 4  # the model's k; served vectors have DIM + 1 columns


@dataclass
class Catalog:
    """What the published version holds, for tests to compute expected answers from."""

    data_dir: Path
    item_ids: list[str]
    vectors: np.ndarray  # (N_ITEMS, DIM + 1)
    version: int

    def expected_top(self, query: np.ndarray, k: int, exclude: set[str] = frozenset()
                     ) -> list[str]:
        """The exact top-k by inner product (the model's ranking)."""
        order = np.argsort(-(self.vectors @ query), kind="stable")
        return [self.item_ids[r] for r in order.tolist()
                if self.item_ids[r] not in exclude][:k]


def item_meta(n: int) -> dict:
    return {"title": f"Item {n}", "category": "books" if n % 2 else "films"}


def publish_catalog(data_dir: Path) -> Catalog:
    """Publish one version: random item vectors; item i's co-occurrence neighbours are i+1
    (weight 0.9) and i+2 (weight 0.5); i5, i6, i7 ... are popular; odd items are books."""
    rng = np.random.default_rng(0)
    ids = [f"i{n}" for n in range(N_ITEMS)]
    vectors = rng.normal(size=(N_ITEMS, DIM + 1)).astype(np.float32)
    rows = np.arange(N_ITEMS)
    nb_ids = np.stack([(rows + 1) % N_ITEMS, (rows + 2) % N_ITEMS], axis=1)
    nb_w = np.tile(np.array([0.9, 0.5], dtype=np.float32), (N_ITEMS, 1))
    popular = {"": [[f"i{n}", 100.0 - n] for n in range(5, 15)],
               "books": [["i1", 3.0], ["i3", 2.0]]}
    blobs, manifest = build_blobs(
        item_ids=ids, vectors=vectors, output_weights=np.ones(DIM), neighbour_ids=nb_ids,
        neighbour_weights=nb_w, popular=popular,
        items_meta={f"i{n}": item_meta(n) for n in range(N_ITEMS)},
        extra={"candidates": 20, "recent_items": 5,
               "ranking": {"blend": 0.3, "recency_decay": 0.75, "recent_used": 5,
                           "pop_blend": 0.0}})
    version = FileArtifactStore(data_dir / "artifacts").publish(blobs, manifest)
    return Catalog(data_dir, ids, vectors, version)


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    return Settings.load({"data_dir": str(data_dir), **overrides}, env={})
