"""A WSGI callable that builds its app on first use, so ``module:app`` works for gunicorn
while importing the module (in tests, tools) reads no environment and opens no backend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


class LazyApp:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        return self.get()(environ, start_response)
