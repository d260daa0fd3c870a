"""Metrics never block or fail a caller, and every name the code sends is in the registry."""

from __future__ import annotations

import ast
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.net import free_port

from recengine.backends.registry import open_metrics
from recengine.backends.statsd import StatsdMetrics
from recengine.config import parse_url
from recengine.metric_names import METRICS, resolve
from recengine.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    """A UDP socket standing in for statsd."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _packets(sock: socket.socket, n: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(n)]


def _emit_everything(m: Metrics, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        m.incr("events_consumed", 3)
        m.gauge("recall_at_k", 0.25)
        m.timing("batch_ms", 1.5)
        with m.timer("flush_ms"):
            pass
        m.hold("version", i)
    return time.perf_counter() - t0


def test_statsd_metrics_are_named_recengine_service_metric(receiver):
    port = receiver.getsockname()[1]
    m = open_metrics(parse_url("metrics", f"statsd://127.0.0.1:{port}"), "trainer")
    m.incr("events_consumed", 5)
    m.gauge("recall_at_k", 0.5)
    m.timing("batch_ms", 12)
    assert _packets(receiver, 3) == ["recengine.trainer.events_consumed:5|c",
                                     "recengine.trainer.recall_at_k:0.5|g",
                                     "recengine.trainer.batch_ms:12.000000|ms"]


def test_with_nothing_listening_sends_neither_block_nor_raise():
    m = open_metrics(parse_url("metrics", f"statsd://127.0.0.1:{free_port()}"), "api")
    assert isinstance(m, StatsdMetrics)
    elapsed = _emit_everything(m, 2000)
    m.close()
    assert elapsed < 2.0  # 10,000 sends: microseconds each, no waiting on anybody


def test_an_unresolvable_host_neither_delays_start_nor_fails_a_send():
    t0 = time.perf_counter()
    m = open_metrics(parse_url("metrics", "statsd://statsd.invalid:8125"), "index")
    assert time.perf_counter() - t0 < 0.5  # resolved in the background, not here
    elapsed = _emit_everything(m, 200)
    m.close()
    assert elapsed < 1.0
    assert m.dropped > 0 or m.client is not None  # dropped until (if ever) it resolves


def test_an_error_inside_the_client_is_counted_not_raised(receiver):
    m = StatsdMetrics("api", "127.0.0.1", receiver.getsockname()[1])

    class Broken:
        def __getattr__(self, name):
            def fail(*args):
                raise RuntimeError("boom")
            return fail

    m.client = Broken()
    m.incr("cache_hit")
    m.timing("recommend_ms", 3)
    assert m.dropped == 2


def test_a_full_socket_buffer_drops_the_packet_instead_of_blocking(receiver):
    m = StatsdMetrics("api", "127.0.0.1", receiver.getsockname()[1])
    assert m.client._sock.gettimeout() == 0.0  # non-blocking


def test_a_held_gauge_is_sent_again_until_changed(receiver):
    m = StatsdMetrics("index", "127.0.0.1", receiver.getsockname()[1], hold_interval_s=0.05)
    m.hold("version", 3)
    time.sleep(0.2)
    m.hold("version", 4)
    time.sleep(0.2)
    m.close()
    got = []
    receiver.settimeout(0.2)
    try:
        while True:
            got.append(receiver.recv(4096).decode())
    except TimeoutError:
        pass
    assert got.count("recengine.index.version:3|g") >= 3
    assert got.count("recengine.index.version:4|g") >= 3
    assert got.index("recengine.index.version:4|g") > max(
        i for i, p in enumerate(got) if p.endswith(":3|g"))


def test_metrics_off_is_a_no_op():
    m = open_metrics(parse_url("metrics", "off"), "trainer")
    assert type(m) is Metrics
    _emit_everything(m, 10)


# --- the registry against the code -------------------------------------------------------------
SERVICE_DIRS = {
    "trainer": ROOT / "services" / "recengine" / "trainer",
    "index": ROOT / "services" / "recengine" / "index",
    "api": ROOT / "services" / "recengine" / "api",
    "operator": ROOT / "operator" / "recengine_operator",
}
#: Modules both HTTP services run (their request timing middleware): they send for each.
SHARED = {ROOT / "services" / "recengine" / "httputil.py": ("index", "api")}
METHODS = {"incr": "counter", "gauge": "gauge", "hold": "gauge", "timing": "timer",
           "timer": "timer"}


def _services_of(path: Path) -> tuple[str, ...]:
    if path in SHARED:
        return SHARED[path]
    for service, folder in SERVICE_DIRS.items():
        if folder in path.parents:
            return (service,)
    return ()


def _name_shape(node: ast.expr) -> str | None:
    """A literal name as is; an f-string with every ``{...}`` as ``{}``; else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def emitted() -> tuple[set[tuple[str, str, str]], list[str]]:
    """(service, name shape, kind) of every metrics call in the services, and the problems."""
    found: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    files = [p for folder in (ROOT / "services", ROOT / "operator") for p in folder.rglob("*.py")]
    for path in files:
        if path.name == "metrics.py" and path.parent.name == "recengine":
            continue  # the client itself
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in METHODS):
                continue
            receiver = ast.unparse(node.func.value)
            if not receiver.endswith("metrics"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            services = _services_of(path)
            shape = _name_shape(node.args[0]) if node.args else None
            if not services:
                problems.append(f"{where}: metrics sent outside a service folder")
            elif shape is None:
                problems.append(f"{where}: the name must be a literal or an f-string")
            else:
                found.update((service, shape, METHODS[node.func.attr]) for service in services)
    return found, problems


def test_the_code_sends_exactly_the_registered_metrics():
    found, problems = emitted()
    assert not problems
    registered = {(m.service, m.shape, m.kind) for m in METRICS}
    assert found - registered == set(), "sent but not in recengine/metric_names.py"
    assert registered - found == set(), "registered but never sent"


def test_registered_names_map_back_to_themselves_in_graphite():
    for m in METRICS:
        field = {"counter": None, "timer": "upper_99", "gauge": None}[m.kind]
        assert resolve(m.graphite(field)) == (m, field)
    with pytest.raises(ValueError, match="no gauge"):
        resolve("stats.gauges.recengine.trainer.nonexistent")
    with pytest.raises(ValueError, match="timer field"):
        resolve("stats.timers.recengine.index.search_ms.p99")
