"""Shared fixtures of the unit tests."""

from __future__ import annotations

import pytest
from support.planted_catalog import Catalog, publish_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return publish_catalog(tmp_path_factory.mktemp("data"))

