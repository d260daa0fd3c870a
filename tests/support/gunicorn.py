"""The index service and the API under real gunicorn, on free ports of 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recengine import serve
from recengine.config import Settings

from .net import HOST, free_port


@dataclass
class Services:
    """Base URLs of the running services; ``settings`` point the API at this index."""

    index: str
    api: str
    settings: Settings
    index_proc: subprocess.Popen
    api_proc: subprocess.Popen


@contextmanager
def gunicorn_services(settings: Settings, log_dir: Path, workers: int = 1
                      ) -> Iterator[Services]:
    """Start the index service, then the API in front of it, wait until both are ready, and
    stop both on exit. Their logs go to ``log_dir/index.log`` and ``log_dir/api.log``."""
    index_port, api_port = free_port(), free_port()
    index, api = f"http://{HOST}:{index_port}", f"http://{HOST}:{api_port}"
    settings = settings.replace(index_url=index)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(serve.start("index", settings, index_port, workers=workers,
                                 log_path=str(log_dir / "index.log")))
        procs.append(serve.start("api", settings, api_port, workers=workers,
                                 log_path=str(log_dir / "api.log")))
        serve.wait_ready(f"{index}/readyz", procs[0])
        serve.wait_ready(f"{api}/readyz", procs[1])
        yield Services(index, api, settings, procs[0], procs[1])
    finally:
        for p in procs:
            serve.stop(p)
