"""FerretDB 1.x on SQLite, speaking the MongoDB wire protocol."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..net import HOST
from .base import CACHE_DIR, ManagedProcess, Server

# Must match the default in tools/infra/install.sh.
FERRETDB_VERSION = os.environ.get("FERRETDB_VERSION", "1.24.2")


class MongoServer(Server):
    """FerretDB on SQLite: the MongoDB wire protocol on ``mongodb://127.0.0.1:27018``."""

    name = "mongo"
    component = "ferretdb"
    default_ports = {"mongo": 27018}
    startup_timeout = 30.0

    def __init__(self, data_dir: Path | str | None = None, *, database: str = "recengine_test",
                 **options: Any) -> None:
        """``data_dir`` and ``options`` as for :class:`Server`; ``database`` is the path of
        :attr:`url`."""
        super().__init__(data_dir, **options)
        self.database = database
        self.binary = CACHE_DIR / "bin" / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.ports['mongo']}"

    @property
    def url(self) -> str:
        """``mongodb://127.0.0.1:PORT/recengine_test``."""
        return f"mongodb://{self.address}/{self.database}"

    def _prepare(self) -> None:
        (self.data_dir / "sqlite").mkdir(exist_ok=True)
        (self.data_dir / "state").mkdir(exist_ok=True)

    def _processes(self) -> list[ManagedProcess]:
        return [
            ManagedProcess(
                name="ferretdb",
                argv=[
                    str(self.binary),
                    "--handler=sqlite",
                    f"--sqlite-url=file:{self.data_dir / 'sqlite'}/",
                    f"--listen-addr={self.address}",
                    f"--state-dir={self.data_dir / 'state'}",
                    "--telemetry=disable",
                    "--debug-addr=-",
                    "--log-level=warn",
                ],
                log_path=self.data_dir / "ferretdb.log",
                cwd=self.data_dir,
            )
        ]

    def _probe(self, proc: ManagedProcess) -> bool:
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            return bool(client.admin.command("ping").get("ok"))
        finally:
            client.close()

