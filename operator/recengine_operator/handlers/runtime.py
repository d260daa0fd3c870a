"""What the handlers share for the operator's lifetime: config, API client, stores, locks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from recengine.metrics import Metrics
from recengine_operator.artifacts import Catalogs
from recengine_operator.config import Config
from recengine_operator.kube import Kube, post_event
from recengine_operator.reconcile import Event


@dataclass
class Runtime:
    config: Config
    kube: Kube
    catalogs: Catalogs = field(default_factory=Catalogs)
    post_event: Callable[[dict, Event], None] = post_event
    """Posts a Kubernetes Event on a RecEngine (through kopf's event queue)."""
    metrics: Metrics = field(default_factory=lambda: Metrics("operator"))
    """statsd metrics (``recengine.operator.*``); no-op unless ``metrics_url`` is set."""
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def exclusive(self, namespace: str, name: str) -> Iterator[None]:
        """One reconciliation of a RecEngine at a time in this process (the timer and the
        change handlers run concurrently; peering keeps other replicas out)."""
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            yield
