"""The backend registry: every role's schemes, one readable line for a URL it cannot serve,
and the production clients loaded only when a URL names them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recengine.artifacts import ArtifactStore
from recengine.backends import registry
from recengine.backends.registry import BACKENDS, URL_OF, backend_class, open_cache
from recengine.config import SCHEMES, BackendURL, parse_url
from recengine.errors import ConfigError
from recengine.lease import Lease
from recengine.metrics import Metrics
from recengine.sources import DeadLetterSink, EventSource
from recengine.stores import Cache, UserStore

ROOT = Path(__file__).resolve().parents[2]
INTERFACES: dict[str, type] = {
    "users": UserStore, "cache": Cache, "artifacts": ArtifactStore, "lease": Lease,
    "events": EventSource, "dlq": DeadLetterSink, "metrics": Metrics,
}


@pytest.mark.parametrize("role", sorted(BACKENDS))
def test_every_scheme_a_setting_accepts_has_a_backend(role: str) -> None:
    assert set(BACKENDS[role]) == set(SCHEMES[URL_OF.get(role, role)])


@pytest.mark.parametrize(("role", "scheme"),
                         sorted((role, scheme) for role in BACKENDS for scheme in BACKENDS[role]))
def test_every_backend_implements_its_interface(role: str, scheme: str) -> None:
    url = BackendURL(URL_OF.get(role, role), f"{scheme}://x", scheme, "x", None, "/x", {})
    cls = backend_class(role, url)
    assert callable(getattr(cls, "from_url", None))
    if role in INTERFACES:
        assert issubclass(cls, INTERFACES[role])


def test_a_scheme_without_a_backend_is_one_readable_line() -> None:
    url = BackendURL("cache", "memcached://cache:11211", "memcached", "cache", 11211, "", {})
    with pytest.raises(ConfigError, match=r"^cache URL 'memcached://cache:11211': "
                                          r"unsupported scheme 'memcached'$"):
        open_cache(url)


def test_a_missing_client_library_is_one_readable_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS["cache"], "redis", "recengine_absent_client:RedisCache")
    with pytest.raises(ConfigError) as caught:
        registry.open_cache(parse_url("cache", "redis://:hunter2@cache:6379/0"))
    assert str(caught.value) == (
        "cache URL 'redis://:***@cache:6379/0' needs the recengine_absent_client client "
        "library, which is not installed (pip install 'recengine[backends]')")


def test_the_embedded_defaults_load_no_production_client(tmp_path: Path) -> None:
    code = """
import json, pathlib, sys
from recengine.backends import registry
from recengine.config import Settings
pathlib.Path(sys.argv[1], "events.jsonl").touch()
s = Settings.load({"data_dir": sys.argv[1]}, env={})
source = registry.open_source(s)
for part in (source, registry.open_dead_letter(s, source), registry.open_event_sink(s),
             registry.open_user_store(s.url("users")), registry.open_cache(s.url("cache")),
             registry.open_artifact_store(s.url("artifacts")),
             registry.open_lease(s.url("artifacts")),
             registry.open_metrics(s.url("metrics"), "api")):
    getattr(part, "close", lambda: None)()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("confluent_kafka", "pymongo", "redis", "torch"))))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": f"{ROOT / 'services'}", "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
