"""carbon-cache + graphite-web (gunicorn) + statsd (node), the metrics path of the dashboards."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..net import HOST, http_get, tcp_request
from .base import CACHE_DIR, ManagedProcess, Server, ServerError, tail

# Must match the default in tools/infra/install.sh.
STATSD_VERSION = os.environ.get("STATSD_VERSION", "0.9.0")

STORAGE_AGGREGATION = """\
# statsd (legacy namespace) writes: stats_counts.X (count per flush), stats.X (rate per
# second), stats.timers.X.{count,sum,lower,upper,mean,...}, stats.gauges.X, stats.sets.X.count.
# Only matters when a schema has more than one archive, but keep it right.
[statsd_counts]
pattern = ^stats_counts\\.
xFilesFactor = 0
aggregationMethod = sum

[counts_and_sums]
pattern = \\.(count|sum|sum_squares)(_\\d+)?$
xFilesFactor = 0
aggregationMethod = sum

[lower]
pattern = \\.lower(_\\d+)?$
xFilesFactor = 0
aggregationMethod = min

[upper]
pattern = \\.upper(_\\d+)?$
xFilesFactor = 0
aggregationMethod = max

[gauges]
pattern = ^stats\\.gauges\\.
xFilesFactor = 0
aggregationMethod = last

[default]
pattern = .*
xFilesFactor = 0
aggregationMethod = average
"""



class GraphiteServer(Server):
    """carbon-cache + graphite-web (gunicorn) + statsd, all on 127.0.0.1.

    ``url`` is graphite-web's base URL (``http://127.0.0.1:18080``); ``statsd_url`` is
    ``statsd://127.0.0.1:18125`` (UDP). Carbon keeps 1 s points for an hour, and statsd
    flushes every second, so a counter shows up in :meth:`render` within ~2 s. Timers get
    ``upper_50`` / ``upper_90`` / ``upper_99`` (statsd ``percentThreshold``, as the dashboards
    expect).
    """

    name = "graphite"
    component = "graphite"
    default_ports = {
        "carbon_line": 12003,
        "carbon_pickle": 12004,
        "carbon_query": 17002,
        "web": 18080,
        "statsd": 18125,
        "statsd_mgmt": 18126,
    }
    startup_timeout = 60.0
    udp_ports = ("statsd",)
    settings_module = "recengine_graphite_settings"

    def __init__(self, data_dir: Path | str | None = None, *, flush_interval_ms: int = 1000,
                 **options: Any) -> None:
        """``data_dir`` and ``options`` as for :class:`Server`; ``flush_interval_ms`` is
        statsd's flushInterval."""
        super().__init__(data_dir, **options)
        self.flush_interval_ms = flush_interval_ms
        self.statsd_home = CACHE_DIR / f"statsd-{STATSD_VERSION}"

    # ----- addresses

    @property
    def url(self) -> str:
        """graphite-web's base URL, e.g. ``http://127.0.0.1:18080``."""
        return f"http://{HOST}:{self.ports['web']}"

    @property
    def statsd_url(self) -> str:
        """``statsd://127.0.0.1:PORT`` (UDP)."""
        return f"statsd://{HOST}:{self.ports['statsd']}"

    @property
    def statsd_address(self) -> tuple[str, int]:
        """(host, UDP port) of statsd."""
        return HOST, self.ports["statsd"]

    @property
    def carbon_address(self) -> tuple[str, int]:
        """(host, TCP port) of carbon's plaintext line receiver."""
        return HOST, self.ports["carbon_line"]

    # ----- paths

    @property
    def _storage(self) -> Path:
        return self.data_dir / "storage"

    @property
    def _conf(self) -> Path:
        return self.data_dir / "conf"

    @property
    def whisper_dir(self) -> Path:
        """Where carbon writes whisper files."""
        return self._storage / "whisper"

    # ----- render API helpers

    def render(
        self, target: str, *, from_: str = "-10min", until: str = "now"
    ) -> list[dict[str, Any]]:
        """Call ``/render?format=json`` and return its list of series."""
        query = urllib.parse.urlencode(
            {"target": target, "format": "json", "from": from_, "until": until}
        )
        status, body = http_get(f"{self.url}/render?{query}", timeout=10)
        if status != 200:
            raise ServerError(f"graphite render {target!r}: HTTP {status}: {body[:500]!r}")
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def datapoints(self, target: str, **kwargs: str) -> list[tuple[float, int]]:
        """Non-null (value, timestamp) points of every series ``target`` matches."""
        return [
            (float(v), int(t))
            for series in self.render(target, **kwargs)
            for v, t in series["datapoints"]
            if v is not None
        ]

    def wait_for_datapoints(
        self,
        target: str,
        predicate: Callable[[list[tuple[float, int]]], bool] = bool,
        *,
        timeout: float = 15.0,
    ) -> list[tuple[float, int]]:
        """Poll the render API until ``predicate(datapoints(target))`` holds."""
        deadline = time.monotonic() + timeout
        points: list[tuple[float, int]] = []
        while True:
            points = self.datapoints(target)
            if predicate(points):
                return points
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"graphite: no matching datapoints for {target!r} after {timeout}s; "
                    f"got {points[-10:]}"
                )
            time.sleep(0.25)

    # ----- lifecycle

    def _prepare(self) -> None:
        for d in (self._conf, self.whisper_dir, self._storage / "lists", self.data_dir / "log"):
            d.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log" / "webapp").mkdir(exist_ok=True)
        p = self.ports
        (self._conf / "carbon.conf").write_text(
            textwrap.dedent(
                f"""\
                [cache]
                STORAGE_DIR = {self._storage}/
                LOCAL_DATA_DIR = {self.whisper_dir}/
                WHITELISTS_DIR = {self._storage}/lists/
                CONF_DIR = {self._conf}/
                LOG_DIR = {self.data_dir}/log/
                PID_DIR = {self.data_dir}/
                ENABLE_LOGROTATION = False
                USER =
                DATABASE = whisper
                MAX_CACHE_SIZE = inf
                MAX_UPDATES_PER_SECOND = inf
                MAX_CREATES_PER_MINUTE = inf
                MIN_TIMESTAMP_RESOLUTION = 1
                LINE_RECEIVER_INTERFACE = {HOST}
                LINE_RECEIVER_PORT = {p["carbon_line"]}
                ENABLE_UDP_LISTENER = False
                PICKLE_RECEIVER_INTERFACE = {HOST}
                PICKLE_RECEIVER_PORT = {p["carbon_pickle"]}
                CACHE_QUERY_INTERFACE = {HOST}
                CACHE_QUERY_PORT = {p["carbon_query"]}
                USE_FLOW_CONTROL = True
                LOG_UPDATES = False
                LOG_CREATES = False
                LOG_CACHE_HITS = False
                LOG_LISTENER_CONN_SUCCESS = False
                CACHE_WRITE_STRATEGY = sorted
                WHISPER_AUTOFLUSH = False
                WHISPER_FALLOCATE_CREATE = True
                CARBON_METRIC_INTERVAL = 60
                """
            )
        )
        (self._conf / "storage-schemas.conf").write_text(
            "[carbon]\npattern = ^carbon\\.\nretentions = 10s:1h\n\n"
            "[everything_1s_for_1h]\npattern = .*\nretentions = 1s:1h\n"
        )
        (self._conf / "storage-aggregation.conf").write_text(STORAGE_AGGREGATION)
        (self._conf / f"{self.settings_module}.py").write_text(
            textwrap.dedent(
                f"""\
                # graphite-web settings for a throwaway test instance (generated).
                SECRET_KEY = "recengine-test-instance-not-secret"
                ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
                TIME_ZONE = "UTC"
                DEBUG = False
                STORAGE_DIR = "{self._storage}/"
                WHISPER_DIR = "{self.whisper_dir}/"
                CERES_DIR = "{self._storage}/ceres/"
                RRD_DIR = "{self._storage}/rrd/"
                INDEX_FILE = "{self._storage}/index"
                LOG_DIR = "{self.data_dir}/log/webapp/"
                CONF_DIR = "{self._conf}/"
                STATIC_ROOT = "{self._storage}/static/"
                DATABASES = {{
                    "default": {{
                        "ENGINE": "django.db.backends.sqlite3",
                        "NAME": "{self._storage}/graphite.db",
                    }}
                }}
                CARBONLINK_HOSTS = ["{HOST}:{p["carbon_query"]}:a"]
                CARBONLINK_TIMEOUT = 1.0
                CARBONLINK_RETRY_DELAY = 1
                DEFAULT_CACHE_DURATION = 0
                FIND_CACHE_DURATION = 0
                USE_WORKER_POOL = False
                LOG_INFO_PERFORMANCE = False
                LOG_ROTATION = False
                """
            )
        )
        flush = self.flush_interval_ms
        (self._conf / "statsd.js").write_text(
            textwrap.dedent(
                f"""\
                {{
                  address: "{HOST}",
                  port: {p["statsd"]},
                  mgmt_address: "{HOST}",
                  mgmt_port: {p["statsd_mgmt"]},
                  flushInterval: {flush},
                  backends: ["./backends/graphite"],
                  graphiteHost: "{HOST}",
                  graphitePort: {p["carbon_line"]},
                  graphite: {{ legacyNamespace: true }},
                  percentThreshold: [50, 90, 99],
                  deleteIdleStats: false
                }}
                """
            )
        )
        self._migrate()

    def _web_env(self) -> dict[str, str]:
        return _debian_python_env(
            {
                "PYTHONPATH": str(self._conf),
                "GRAPHITE_SETTINGS_MODULE": self.settings_module,
                "DJANGO_SETTINGS_MODULE": "graphite.settings",
            }
        )

    def _migrate(self) -> None:
        """Create graphite-web's SQLite DB; a migrated copy is cached per graphite version."""
        db = self._storage / "graphite.db"
        if db.exists():
            return
        cached = CACHE_DIR / f"graphite-web-{_debian_version('graphite-web')}" / "graphite.db"
        if cached.exists():
            shutil.copyfile(cached, db)
            return
        log = self.data_dir / "migrate.log"
        with log.open("ab") as out:
            proc = subprocess.run(
                ["/usr/bin/python3", "/usr/bin/graphite-manage", "migrate", "--noinput"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._web_env(),
                cwd=self.data_dir,
                check=False,
                timeout=300,
            )
        if proc.returncode != 0 or not db.exists():
            raise ServerError(f"graphite: graphite-manage migrate failed\n{tail(log)}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(db, tmp)
        tmp.replace(cached)

    def _processes(self) -> list[ManagedProcess]:
        return [
            ManagedProcess(
                name="carbon-cache",
                argv=[
                    "/usr/bin/python3",
                    "/usr/bin/carbon-cache",
                    f"--config={self._conf / 'carbon.conf'}",
                    f"--pidfile={self.data_dir / 'carbon-cache.pid'}",
                    f"--logdir={self.data_dir / 'log'}",
                    "--nodaemon",  # logs to stdout (--debug would log every queue flush)
                    "start",
                ],
                env=_debian_python_env({}),
                log_path=self.data_dir / "carbon-cache.log",
                cwd=self.data_dir,
            ),
            ManagedProcess(
                name="graphite-web",
                argv=[
                    "/usr/bin/python3",
                    "/usr/bin/gunicorn",
                    "--bind",
                    f"{HOST}:{self.ports['web']}",
                    "--workers",
                    "1",
                    "--threads",
                    "4",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "5",
                    "--log-level",
                    "warning",
                    "--chdir",
                    str(self._conf),
                    "graphite.wsgi:application",
                ],
                env=self._web_env(),
                log_path=self.data_dir / "graphite-web.log",
                cwd=self._conf,
            ),
            ManagedProcess(
                name="statsd",
                argv=[
                    shutil.which("node") or "node",
                    str(self.statsd_home / "node_modules" / "statsd" / "stats.js"),
                    str(self._conf / "statsd.js"),
                ],
                log_path=self.data_dir / "statsd.log",
                cwd=self.statsd_home / "node_modules" / "statsd",
            ),
        ]

    def _proc_ports(self, proc: ManagedProcess) -> list[int]:
        p = self.ports
        return {
            "carbon-cache": [p["carbon_line"], p["carbon_pickle"], p["carbon_query"]],
            "graphite-web": [p["web"]],
            "statsd": [p["statsd_mgmt"]],
        }[proc.name]

    def _probe(self, proc: ManagedProcess) -> bool:
        if proc.name == "carbon-cache":
            # A real CarbonLink cache query, as graphite-web sends it.
            request = pickle.dumps({"type": "cache-query", "metric": "recengine.probe"}, 2)
            with socket.create_connection((HOST, self.ports["carbon_query"]), timeout=2) as s:
                s.sendall(struct.pack("!L", len(request)) + request)
                header = _recv_exactly(s, 4)
                body = _recv_exactly(s, struct.unpack("!L", header)[0])
            return "datapoints" in pickle.loads(body)  # our own local carbon
        if proc.name == "graphite-web":
            status, body = http_get(f"{self.url}/metrics/find?query=*", timeout=3)
            return status == 200 and body.lstrip().startswith(b"[")
        if proc.name == "statsd":
            return b"health: up" in tcp_request(self.ports["statsd_mgmt"], b"health\n")
        raise AssertionError(proc.name)



def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf



def _debian_version(package: str) -> str:
    """Installed version of a Debian package ('unknown' when dpkg cannot tell)."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip().replace(":", "_").replace("/", "_") or "unknown"



def _debian_python_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Environment for Debian's /usr/bin/python3 tools, free of the test venv's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if p and p != venv_bin)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env

