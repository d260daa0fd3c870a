"""Running the Falcon apps under gunicorn, with settings passed through the environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

import requests

from recengine.config import ENV_PREFIX, Settings

APPS = {"index": "recengine.index.app:app", "api": "recengine.api.app:app"}
#: Threads per gunicorn worker. One (the default for both services) runs
#: :class:`recengine.gunicorn_conf.InlineWorker`: keep-alive connections as with gthread, each
#: request handled on the worker's only thread; more than one runs gunicorn's gthread worker.
#:
#: Why, measured with ``bench/serving.py`` on 2 cores (the load generator included):
#:
#: * Workers: one process per core for each service (``--workers 2`` on 2 cores). The request
#:   path is Python holding the GIL except inside faiss, so a process uses one core at most;
#:   fewer processes leave a core idle, more only take turns on the same cores.
#: * One thread: a gthread request crosses threads twice (poller -> pool -> poller), each a
#:   GIL hand-over and a context switch; measured 21 context switches per /recommend across
#:   the two services with gthread (index 2 threads, API 4) against 3.5 inline, and 1,450 us
#:   of CPU per request against 1,050. At 100k items with 2 clients: p50 1.1 ms and 1,630
#:   requests/s inline against 1.6-2.3 ms and 750-970 requests/s with gthread.
#: * The price: a worker serves one request at a time, so an API worker waits out its index
#:   call; concurrency is the number of workers. For an API that should absorb a slow index
#:   without queueing, run more API workers (they are small) or ``--threads 4`` (gthread).
#: * Clients (``bench/serving.py --clients``): one closed-loop client per free core. At 100k
#:   items, 1 client: p50 1.08 ms, 866 requests/s; 2: p50 1.1 ms, 1,634/s; 3: p50 1.7 ms,
#:   1,636/s (the cores are full: more clients only queue). When other programs hold a
#:   core, 2 clients share the one left: at 1M items with about 1 core taken, 2 clients gave
#:   p50 3.0-3.4 ms, p99 11-15 ms, 480-525/s and 1 client p50 1.8-1.9 ms, p99 3.7-5.3 ms,
#:   460-505/s; with 0.7 cores taken, 2 clients gave p50 2.3 ms, p99 10 ms, 690/s.
#: * TCP, not a Unix socket, between API and index: the index pods are elsewhere in a
#:   cluster, and on this machine a loopback TCP round trip costs 15 us against 10 us over a
#:   Unix socket, well under 1% of a request.
THREADS = {"index": 1, "api": 1}
INLINE_WORKER = "recengine.gunicorn_conf.InlineWorker"


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``Settings.load()`` rebuilds exactly ``settings``."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith(ENV_PREFIX)}
    return {**env, **settings.to_env()}


def gunicorn_argv(service: str, bind: str, workers: int, threads: int | None = None,
                  timeout_s: int = 60) -> list[str]:
    threads = threads or THREADS[service]
    exe = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    # No --access-logfile unless asked for: with any access log set, even /dev/null, gunicorn
    # formats a line per request (measured: 70-100 us of CPU per request in each service).
    access = ["--access-logfile", "-"] if os.environ.get("RECENGINE_ACCESS_LOG") else []
    worker_class = INLINE_WORKER if threads == 1 else "gthread"
    return [exe, APPS[service], "--config", "python:recengine.gunicorn_conf",
            "--bind", bind, "--workers", str(workers), "--worker-class", worker_class,
            "--threads", str(threads), "--timeout", str(timeout_s), "--graceful-timeout", "10",
            *access, "--log-level", "warning", "--name", f"recengine-{service}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(service: str, settings: Settings, port: int, workers: int = 1,
          log_path: str | None = None, threads: int | None = None) -> subprocess.Popen:
    """Start a gunicorn process for ``service`` on 127.0.0.1:port."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(gunicorn_argv(service, f"127.0.0.1:{port}", workers, threads),
                            env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; raise with a clear reason otherwise."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with code {proc.returncode}")
        try:
            r = requests.get(url, timeout=1.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s: {last}")


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a process started by :func:`start` (SIGTERM, then SIGKILL)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
