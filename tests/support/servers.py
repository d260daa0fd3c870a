"""Start and stop the real servers the integration tests talk to.

Every server runs as a plain process on 127.0.0.1 (no Docker), with its own data directory
that also holds its logs. Before the first start, each class calls
``tools/infra/install.sh <component>``, which installs or builds the server once and caches it
under ``~/.cache/recengine/`` (``$RECENGINE_CACHE``), so warm starts take seconds.

Servers:

* :class:`KafkaServer`    Apache Kafka 3.9 in KRaft mode (one combined broker + controller).
* :class:`MongoServer`    FerretDB 1.x on SQLite, speaking the MongoDB wire protocol.
* :class:`RedisServer`    Debian's redis-server.
* :class:`GraphiteServer` carbon-cache + graphite-web (gunicorn) + statsd (node).

Each server prefers fixed, non-default ports (see ``DEFAULT_PORTS``); when one of them is
already taken (another test session, a developer's ``tools/infra/up.sh``) a free port is
picked instead, so always read the URL from the server object. ``start()`` waits until the
server answers its own protocol and raises :class:`ServerError` with the log tail when it
does not; ``stop()`` terminates by PID, then kills; ``restart()`` keeps ports and data.

Run ``python -m support.servers up|down|status`` from ``tests/`` (or use
``tools/infra/up.sh``) to keep a set of servers running for development.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO_ROOT / "tools" / "infra" / "install.sh"
CACHE_DIR = Path(os.environ.get("RECENGINE_CACHE", Path.home() / ".cache" / "recengine"))

# Must match the defaults in tools/infra/install.sh.
KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "3.9.2")
FERRETDB_VERSION = os.environ.get("FERRETDB_VERSION", "1.24.2")
STATSD_VERSION = os.environ.get("STATSD_VERSION", "0.9.0")

HOST = "127.0.0.1"

#: Preferred ports; a busy one is replaced by a free port at first start.
DEFAULT_PORTS: dict[str, dict[str, int]] = {
    "kafka": {"broker": 19092, "controller": 19093},
    "mongo": {"mongo": 27018},
    "redis": {"redis": 16379},
    "graphite": {
        "carbon_line": 12003,
        "carbon_pickle": 12004,
        "carbon_query": 17002,
        "web": 18080,
        "statsd": 18125,
        "statsd_mgmt": 18126,
    },
}

LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A server could not be installed, started or stopped."""


# --------------------------------------------------------------------------- helpers


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


_installed: set[str] = set()


def ensure_installed(component: str) -> None:
    """Run ``tools/infra/install.sh component`` once per process (fast when cached)."""
    if component in _installed:
        return
    if not INSTALL_SH.is_file():
        raise ServerError(f"installer not found: {INSTALL_SH}")
    proc = subprocess.run(
        ["bash", str(INSTALL_SH), component],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise ServerError(
            f"{INSTALL_SH.relative_to(REPO_ROOT)} {component} failed "
            f"(exit {proc.returncode}):\n{last}"
        )
    _installed.add(component)


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, exclude: Sequence[int] = ()) -> int:
    """Return a currently unused TCP port (also free for UDP) on ``host``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        return port
    raise ServerError("could not find a free port")


def udp_port_is_free(port: int, host: str = HOST) -> bool:
    """True when ``host:port`` can be bound for UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tcp_request(port: int, payload: bytes, *, host: str = HOST, timeout: float = 2.0) -> bytes:
    """Send ``payload`` over a fresh TCP connection and return the first reply chunk."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(65536)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); with the PID it
    identifies one process even after the PID is reused (or its title is changed)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """One OS process of a server, started in its own session, logging to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stop_timeout: float = 20.0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Launch the process; stdout and stderr are appended to ``log_path``."""
        if self.running():
            return
        exe = self.argv[0]
        if not (os.path.isabs(exe) and os.access(exe, os.X_OK)) and shutil.which(exe) is None:
            raise ServerError(f"{self.name}: executable not found: {exe}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {time.strftime('%F %T')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def stop(self, *, hard: bool = False) -> None:
        """SIGTERM the process (its PID), wait, then SIGKILL its process group.

        With ``hard``, SIGKILL at once (a crash: no clean shutdown).
        """
        p = self.popen
        if p is None:
            return
        if hard and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout=10)
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(timeout=10)
        # The process led its own session: take down any child it left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        self.popen = None


def _registry_dir(kind: str) -> Path:
    return CACHE_DIR / "run" / kind


# --------------------------------------------------------------------------- base class


class Server(ABC):
    """Base class: ports, data dir, install, start with readiness wait, stop, restart.

    Subclasses define ``component`` (the install.sh target), ``_prepare()`` (write config
    once per data dir), ``_processes()`` (what to run, in order) and ``_probe(proc)``
    (a real protocol check that returns True once ``proc`` serves requests).
    """

    name: ClassVar[str]
    component: ClassVar[str]
    startup_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fixed_ports: bool = False,
        registry: str = "test",
    ) -> None:
        """Create (not start) the server.

        Args:
            data_dir: where config, data and logs go; a new temp dir when None.
            ports: overrides of ``DEFAULT_PORTS[name]``; use 0 to always pick a free port.
            fixed_ports: raise instead of choosing another port when a preferred one is busy.
            registry: namespace of the PID files under ``~/.cache/recengine/run/`` used to
                reap servers leaked by a killed session ("test") or kept by up.sh ("dev").
        """
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix=f"recengine-{self.name}-"))
            if data_dir is None
            else Path(data_dir).resolve()
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports: dict[str, int] = {**DEFAULT_PORTS[self.name], **(ports or {})}
        self.fixed_ports = fixed_ports
        self.registry = registry
        self._ports_allocated = False
        self._prepared = False
        self._procs: list[ManagedProcess] = []

    # ----- public API

    @property
    @abstractmethod
    def url(self) -> str:
        """Connection URL in the project's style (e.g. ``redis://127.0.0.1:16379/0``)."""

    @property
    def log_paths(self) -> list[Path]:
        """Log files of this server, all inside ``data_dir``."""
        return [p.log_path for p in self._procs] or sorted(self.data_dir.glob("*.log"))

    def running(self) -> bool:
        """True when every process of the server is alive."""
        return bool(self._procs) and all(p.running() for p in self._procs)

    def start(self) -> Self:
        """Install if needed, then start and wait until the server answers its protocol."""
        if self.running():
            return self
        ensure_installed(self.component)
        self._reap_leaked()
        if not self._ports_allocated:
            self._allocate_ports()
        if not self._prepared:
            self._prepare()
            self._prepared = True
        self._procs = self._processes()
        started = time.monotonic()
        try:
            for proc in self._procs:
                self._wait_ports_released(proc)
                proc.start()
                self._register(proc)
                self._wait_ready(proc, started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, hard: bool = False) -> None:
        """Stop all processes by PID (SIGTERM, then SIGKILL), in reverse start order.

        With ``hard``, SIGKILL at once, as in a crash.
        """
        for proc in reversed(self._procs):
            pid = proc.pid
            proc.stop(hard=hard)
            if pid is not None:
                self._unregister(proc, pid)

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (``hard``: SIGKILL, as in a crash), then start again on the same ports with
        the same data directory."""
        self.stop(hard=hard)
        return self.start()

    def cleanup(self) -> None:
        """Stop and delete the data directory if this object created it."""
        self.stop()
        if self._owns_data_dir and os.environ.get("RECENGINE_KEEP_SERVER_DATA") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of every log of this server, for failure messages."""
        parts = []
        for path in self.log_paths:
            text = tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines)\n{text}")
        return "\n".join(parts) or f"(no logs in {self.data_dir})"

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (URL, ports, PIDs, data dir)."""
        return {
            "url": self.url,
            "ports": dict(self.ports),
            "pids": {p.name: p.pid for p in self._procs},
            "data_dir": str(self.data_dir),
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} data_dir={self.data_dir}>"

    # ----- subclass hooks

    def _prepare(self) -> None:
        """Write configuration (each time the object first starts); nothing by default."""
        return None

    @abstractmethod
    def _processes(self) -> list[ManagedProcess]:
        """The processes to start, in order."""

    @abstractmethod
    def _probe(self, proc: ManagedProcess) -> bool:
        """Return True when ``proc`` answers requests; may raise while it does not."""

    def _proc_ports(self, proc: ManagedProcess) -> list[int]:
        """Ports ``proc`` binds (checked free before a restart)."""
        return list(self.ports.values())

    udp_ports: ClassVar[tuple[str, ...]] = ()

    # ----- internals

    def _allocate_ports(self) -> None:
        taken: list[int] = []
        for key, port in list(self.ports.items()):
            udp = key in self.udp_ports
            busy = port == 0 or port in taken or not port_is_free(port)
            if not busy and udp:
                busy = not udp_port_is_free(port)
            if busy:
                if self.fixed_ports and port != 0:
                    raise ServerError(f"{self.name}: port {port} ({key}) is already in use")
                port = free_port(exclude=[*taken, *self.ports.values()])
            self.ports[key] = port
            taken.append(port)
        self._ports_allocated = True

    def _wait_ports_released(self, proc: ManagedProcess, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for port in self._proc_ports(proc):
            while not port_is_free(port):
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"{self.name}: port {port} is still in use, cannot start {proc.name}"
                    )
                time.sleep(0.1)

    def _wait_ready(self, proc: ManagedProcess, deadline: float) -> None:
        last_error: BaseException | None = None
        delay = 0.05
        while True:
            if not proc.running():
                code = proc.popen.returncode if proc.popen is not None else None
                raise ServerError(
                    f"{self.name}: {proc.name} exited with code {code} during startup\n"
                    f"{self.log_tail()}"
                )
            try:
                if self._probe(proc):
                    return
            except Exception as e:  # the server is not ready yet
                last_error = e
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name}: {proc.name} not ready after {self.startup_timeout:.0f}s "
                    f"(last probe error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    # PID registry: a session killed with SIGKILL cannot stop its servers; the next start of
    # the same server reaps them, but only when their owner is gone and the PID still runs
    # the very command that was recorded.

    def _registry_file(self, proc: ManagedProcess) -> Path:
        return _registry_dir(self.registry) / f"{self.name}-{proc.name}-{os.getpid()}.json"

    def _register(self, proc: ManagedProcess) -> None:
        path = self._registry_file(proc)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert proc.pid is not None
        record = {
            "pid": proc.pid,
            "start_time": _start_time(proc.pid),
            "owner": os.getpid(),
            "argv": proc.argv,
            "data_dir": str(self.data_dir),
            "url": self.url,
            "ports": self.ports,
        }
        path.write_text(json.dumps(record))

    def _unregister(self, proc: ManagedProcess, pid: int) -> None:
        path = self._registry_file(proc)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == pid:
                path.unlink()

    def _reap_leaked(self) -> None:
        for path in _registry_dir(self.registry).glob(f"{self.name}-*.json"):
            reap_recorded(path, only_orphans=True)


def reap_recorded(path: Path, *, only_orphans: bool) -> bool:
    """Stop the process recorded in a registry file (by PID); True when one was stopped.

    With ``only_orphans`` the process is left alone while the Python process that started it
    still runs (another test session). The PID is signalled only while it is still the
    recorded process (same kernel start time).
    """
    try:
        record = json.loads(path.read_text())
        pid, owner, started = int(record["pid"]), int(record["owner"]), record["start_time"]
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    if only_orphans and owner != os.getpid() and _pid_alive(owner):
        return False
    stopped = False
    if started is not None and _pid_alive(pid) and _start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        stopped = True
    with contextlib.suppress(OSError):
        path.unlink()
    data_dir = Path(str(record.get("data_dir", "")))
    if (
        only_orphans
        and data_dir.parent == Path(tempfile.gettempdir())
        and data_dir.name.startswith("recengine-")
        and os.environ.get("RECENGINE_KEEP_SERVER_DATA") != "1"
    ):
        shutil.rmtree(data_dir, ignore_errors=True)  # a temp dir of a killed session
    return stopped


# --------------------------------------------------------------------------- Kafka


class KafkaServer(Server):
    """Apache Kafka (KRaft, one node acting as broker and controller).

    ``url`` is ``kafka://127.0.0.1:19092``; ``bootstrap_servers`` is ``127.0.0.1:19092``.
    """

    name = "kafka"
    component = "kafka"
    startup_timeout = 90.0

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fixed_ports: bool = False,
        registry: str = "test",
        heap: str = "512m",
        auto_create_topics: bool = False,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        """See :class:`Server`; ``extra_properties`` are appended to server.properties."""
        super().__init__(data_dir, ports=ports, fixed_ports=fixed_ports, registry=registry)
        self.heap = heap
        self.auto_create_topics = auto_create_topics
        self.extra_properties = dict(extra_properties or {})
        self.home = CACHE_DIR / f"kafka-{KAFKA_VERSION}"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the PLAINTEXT listener, for client configs."""
        return f"{HOST}:{self.ports['broker']}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:PORT``."""
        return f"kafka://{self.bootstrap_servers}"

    @property
    def properties_path(self) -> Path:
        """The broker's server.properties."""
        return self.data_dir / "server.properties"

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java") or "java"
        opts = [f"-Xmx{heap}"] if heap else []
        return [
            java,
            *opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            str(self.home / "libs" / "*"),
            main,
            *args,
        ]

    def _prepare(self) -> None:
        b, c = self.ports["broker"], self.ports["controller"]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{c}",
            "listeners": f"PLAINTEXT://{HOST}:{b},CONTROLLER://{HOST}:{c}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{b}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "kraft"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "delete.topic.enable": "true",
            **self.extra_properties,
        }
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j.properties").write_text(
            textwrap.dedent(
                """\
                log4j.rootLogger=INFO, stdout
                log4j.appender.stdout=org.apache.log4j.ConsoleAppender
                log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
                log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
                log4j.logger.kafka.request.logger=WARN
                log4j.logger.org.apache.kafka.clients=WARN
                log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
                log4j.logger.kafka.log.LogCleaner=WARN
                """
            )
        )
        if (self.data_dir / "kraft" / "meta.properties").exists():
            return  # formatted by an earlier start with this data dir
        # A cluster id is a Kafka Uuid: 16 random bytes, base64url without padding.
        cluster_id = ""
        while not cluster_id or cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        log = self.data_dir / "format.log"
        with log.open("ab") as out:
            proc = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    cluster_id,
                    "-c",
                    str(self.properties_path),
                    heap="256m",
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=120,
            )
        if proc.returncode != 0:
            raise ServerError(f"kafka: StorageTool format failed\n{tail(log)}")

    def _processes(self) -> list[ManagedProcess]:
        return [
            ManagedProcess(
                name="broker",
                argv=self._java("kafka.Kafka", str(self.properties_path), heap=self.heap),
                log_path=self.data_dir / "kafka.log",
                cwd=self.data_dir,
                stop_timeout=30.0,
            )
        ]

    def _probe(self, proc: ManagedProcess) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)


# --------------------------------------------------------------------------- FerretDB


class MongoServer(Server):
    """FerretDB on SQLite: the MongoDB wire protocol on ``mongodb://127.0.0.1:27018``."""

    name = "mongo"
    component = "ferretdb"
    startup_timeout = 30.0

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fixed_ports: bool = False,
        registry: str = "test",
        database: str = "recengine_test",
    ) -> None:
        """See :class:`Server`; ``database`` is the path of :attr:`url`."""
        super().__init__(data_dir, ports=ports, fixed_ports=fixed_ports, registry=registry)
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


# --------------------------------------------------------------------------- Redis


class RedisServer(Server):
    """redis-server on ``redis://127.0.0.1:16379/0`` (no persistence unless asked)."""

    name = "redis"
    component = "redis"
    startup_timeout = 20.0

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fixed_ports: bool = False,
        registry: str = "test",
        appendonly: bool = False,
    ) -> None:
        """See :class:`Server`; ``appendonly`` keeps data across :meth:`restart`."""
        super().__init__(data_dir, ports=ports, fixed_ports=fixed_ports, registry=registry)
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


# --------------------------------------------------------------------------- Graphite


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
    startup_timeout = 60.0
    udp_ports = ("statsd",)
    settings_module = "recengine_graphite_settings"

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fixed_ports: bool = False,
        registry: str = "test",
        flush_interval_ms: int = 1000,
    ) -> None:
        """See :class:`Server`; ``flush_interval_ms`` is statsd's flushInterval."""
        super().__init__(data_dir, ports=ports, fixed_ports=fixed_ports, registry=registry)
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


# --------------------------------------------------------------------------- CLI for up.sh

SERVER_CLASSES: dict[str, type[Server]] = {
    "kafka": KafkaServer,
    "mongo": MongoServer,
    "redis": RedisServer,
    "graphite": GraphiteServer,
}


def _urls(server: Server) -> Iterator[tuple[str, str]]:
    yield server.name, server.url
    if isinstance(server, GraphiteServer):
        yield "statsd", server.statsd_url


def main(argv: Sequence[str] | None = None) -> int:
    """``up [names]`` starts servers that outlive this command; ``down`` stops them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m support.servers", description=main.__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(SERVER_CLASSES)}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=CACHE_DIR / "dev",
        help="parent of the servers' data dirs (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    names = args.names or list(SERVER_CLASSES)
    unknown = sorted(set(names) - set(SERVER_CLASSES))
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}")
    registry = _registry_dir("dev")
    for path in registry.glob("*.json"):  # forget servers that died on their own
        with contextlib.suppress(OSError, ValueError, KeyError):
            rec = json.loads(path.read_text())
            pid = int(rec["pid"])
            if not (_pid_alive(pid) and _start_time(pid) == rec["start_time"]):
                path.unlink()
    if args.action == "down":
        for name in names:
            for path in sorted(registry.glob(f"{name}-*.json")):
                if reap_recorded(path, only_orphans=False):
                    print(f"stopped {path.stem}")
        return 0
    if args.action == "status":
        for path in sorted(registry.glob("*.json")):
            rec = json.loads(path.read_text())
            state = "running" if _pid_alive(int(rec["pid"])) else "dead"
            print(f"{path.stem:24} {state:8} pid={rec['pid']:<8} {rec['url']}")
        return 0
    for name in names:
        if any(registry.glob(f"{name}-*.json")):
            print(f"{name}: already up (see `status`; `down` first to restart)", file=sys.stderr)
            continue
        server = SERVER_CLASSES[name](args.data_dir / name, registry="dev")
        try:
            server.start()
        except ServerError as e:
            print(e, file=sys.stderr)
            return 1
        # Keep the processes when this command exits; `down` stops them by PID.
        for proc in server._procs:
            proc.popen = None
        for label, url in _urls(server):
            print(f"{label:9} {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
