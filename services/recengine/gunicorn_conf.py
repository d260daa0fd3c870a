"""gunicorn hooks for the recengine apps (``gunicorn -c python:recengine.gunicorn_conf``).

Each worker builds its app before it accepts a connection, so every worker of an index pod
has its embedding version loaded (or is polling for the first one) before it can answer; a
readiness probe answered by one worker then speaks for all of them.
"""

from __future__ import annotations

from typing import Any

from recengine.wsgi import LazyApp


def post_worker_init(worker: Any) -> None:
    app = worker.wsgi
    if isinstance(app, LazyApp):
        app.get()
