"""Debian's redis-server, without persistence unless asked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..net import HOST, tcp_request
from .base import ManagedProcess, Server


class RedisServer(Server):
    """redis-server on ``redis://127.0.0.1:16379/0`` (no persistence unless asked)."""

    name = "redis"
    component = "redis"
    default_ports = {"redis": 16379}
    startup_timeout = 20.0

    def __init__(self, data_dir: Path | str | None = None, *, appendonly: bool = False,
                 **options: Any) -> None:
        """``data_dir`` and ``options`` as for :class:`Server`; ``appendonly`` keeps data
        across :meth:`restart`."""
        super().__init__(data_dir, **options)
        self.appendonly = appendonly

    @property
    def port(self) -> int:
        """The TCP port."""
        return self.ports["redis"]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    def _processes(self) -> list[ManagedProcess]:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            ManagedProcess(
                name="redis-server",
                argv=[
                    exe,
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--dir",
                    str(self.data_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "yes" if self.appendonly else "no",
                    "--daemonize",
                    "no",
                    "--logfile",
                    "",
                ],
                log_path=self.data_dir / "redis.log",
                cwd=self.data_dir,
            )
        ]

    def _probe(self, proc: ManagedProcess) -> bool:
        return tcp_request(self.port, b"PING\r\n").startswith(b"+PONG")

