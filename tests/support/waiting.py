"""Waiting for something to become true, with a message that says what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], what: str, timeout_s: float = 60.0, *,
               interval_s: float = 0.5, detail: Callable[[], str] | None = None,
               error: type[Exception] = AssertionError) -> T:
    """Call ``predicate`` every ``interval_s`` until it returns something truthy, and return
    that. After ``timeout_s``, raise ``error`` naming ``what``, with ``detail()`` appended (a
    log tail, the last value seen). An exception from ``predicate`` ends the wait at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = detail() if detail is not None else ""
            raise error(f"timed out after {timeout_s:.0f}s waiting for {what}"
                        + (f"\n{extra}" if extra else ""))
        time.sleep(interval_s)


def wait_for_probe(probe: Callable[[], object], what: str, timeout_s: float, *,
                   check: Callable[[], None] | None = None, logs: Callable[[], str] | None = None,
                   interval_s: float = 0.3, error: type[Exception] = AssertionError) -> None:
    """:func:`wait_until` for a starting server: an exception from ``probe`` means "not up
    yet" (the last one is reported), ``check()`` runs first each round and raises when waiting
    is pointless (a process exited), and ``logs()`` is appended on timeout."""
    last: list[Exception] = []

    def ready() -> object:
        if check is not None:
            check()
        try:
            return probe()
        except Exception as exc:  # not up yet
            last[:] = [exc]
            return False

    def detail() -> str:
        probe_error = f"last probe error: {last[0]!r}" if last else "no probe error"
        return probe_error + (f"\n{logs()}" if logs is not None else "")

    wait_until(ready, what, timeout_s, interval_s=interval_s, detail=detail, error=error)
