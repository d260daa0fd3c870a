"""Operator shutdown: close the artifact stores (Mongo connections) and the metrics."""

from __future__ import annotations

from recengine_operator.handlers.runtime import Runtime


def close(runtime: Runtime | None) -> None:
    if runtime is not None:
        runtime.catalogs.close()
        runtime.metrics.close()
