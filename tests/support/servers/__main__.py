"""``python -m support.servers up|down|status`` (from ``tests/``; ``tools/infra/up.sh``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import SERVER_CLASSES, GraphiteServer, Server, ServerError
from .base import CACHE_DIR, pid_alive, reap_recorded, registry_dir, start_time


def _urls(server: Server) -> Iterator[tuple[str, str]]:
    yield server.name, server.url
    if isinstance(server, GraphiteServer):
        yield "statsd", server.statsd_url


def main(argv: Sequence[str] | None = None) -> int:
    """``up [names]`` starts servers that outlive this command; ``down`` stops them."""
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
    registry = registry_dir("dev")
    for path in registry.glob("*.json"):  # forget servers that died on their own
        with contextlib.suppress(OSError, ValueError, KeyError):
            rec = json.loads(path.read_text())
            pid = int(rec["pid"])
            if not (pid_alive(pid) and start_time(pid) == rec["start_time"]):
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
            state = "running" if pid_alive(int(rec["pid"])) else "dead"
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
