"""What every test server shares: install, ports, processes, readiness, PID registry.

Each server (``kafka.py``, ``mongo.py``, ``redis.py``, ``graphite.py``) subclasses
:class:`Server`; see the package docstring for how they are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from ..net import free_port, port_is_free, udp_port_is_free
from ..waiting import wait_for_probe

REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALL_SH = REPO_ROOT / "tools" / "infra" / "install.sh"
CACHE_DIR = Path(os.environ.get("RECENGINE_CACHE", Path.home() / ".cache" / "recengine"))

LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """A server could not be installed, started or stopped."""



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



def pid_alive(pid: int) -> bool:
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



def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); with the PID it
    identifies one process even after the PID is reused (or its title is changed)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None



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



def registry_dir(kind: str) -> Path:
    return CACHE_DIR / "run" / kind



class Server(ABC):
    """Base class: ports, data dir, install, start with readiness wait, stop, restart.

    Subclasses define ``component`` (the install.sh target), ``_prepare()`` (write config
    once per data dir), ``_processes()`` (what to run, in order) and ``_probe(proc)``
    (a real protocol check that returns True once ``proc`` serves requests).
    """

    name: ClassVar[str]
    component: ClassVar[str]
    #: Preferred ports by role; a busy one is replaced by a free port at first start.
    default_ports: ClassVar[dict[str, int]]
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
            ports: overrides of ``default_ports``; use 0 to always pick a free port.
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
        self.ports: dict[str, int] = {**self.default_ports, **(ports or {})}
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
        def running() -> None:
            if not proc.running():
                code = proc.popen.returncode if proc.popen is not None else None
                raise ServerError(
                    f"{self.name}: {proc.name} exited with code {code} during startup\n"
                    f"{self.log_tail()}"
                )

        wait_for_probe(lambda: self._probe(proc), f"{self.name}: {proc.name} to answer",
                       max(0.0, deadline - time.monotonic()), check=running, logs=self.log_tail,
                       interval_s=0.2, error=ServerError)

    # PID registry: a session killed with SIGKILL cannot stop its servers; the next start of
    # the same server reaps them, but only when their owner is gone and the PID still runs
    # the very command that was recorded.

    def _registry_file(self, proc: ManagedProcess) -> Path:
        return registry_dir(self.registry) / f"{self.name}-{proc.name}-{os.getpid()}.json"

    def _register(self, proc: ManagedProcess) -> None:
        path = self._registry_file(proc)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert proc.pid is not None
        record = {
            "pid": proc.pid,
            "start_time": start_time(proc.pid),
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
        for path in registry_dir(self.registry).glob(f"{self.name}-*.json"):
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
    if only_orphans and owner != os.getpid() and pid_alive(owner):
        return False
    stopped = False
    if started is not None and pid_alive(pid) and start_time(pid) == started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(pid) and time.monotonic() < deadline:
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

