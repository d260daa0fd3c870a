"""Running the Falcon apps under gunicorn, with settings passed through the environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import fields

import requests

from recengine.config import ENV_PREFIX, Settings

APPS = {"index": "recengine.index.app:app", "api": "recengine.api.app:app"}
#: Threads per gunicorn worker. More than one selects the gthread worker, which keeps client
#: connections alive (the sync worker closes each one); the API mostly waits on the index.
THREADS = {"index": 2, "api": 4}


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``Settings.load()`` rebuilds exactly ``settings``."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith(ENV_PREFIX)}
    for f in fields(settings):
        if f.name == "extra":
            continue
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    return env


def gunicorn_argv(service: str, bind: str, workers: int, threads: int | None = None,
                  timeout_s: int = 60) -> list[str]:
    threads = threads or THREADS[service]
    exe = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    return [exe, APPS[service], "--config", "python:recengine.gunicorn_conf",
            "--bind", bind, "--workers", str(workers),
            "--threads", str(threads), "--timeout", str(timeout_s), "--graceful-timeout", "10",
            "--access-logfile", "-" if os.environ.get("RECENGINE_ACCESS_LOG") else "/dev/null",
            "--log-level", "warning", "--name", f"recengine-{service}"]


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
