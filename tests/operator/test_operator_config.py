"""The operator's one configuration object, from RECENGINE_OPERATOR_* variables."""

from __future__ import annotations

import pytest

from recengine.errors import ConfigError
from recengine_operator.config import Config


def test_defaults_without_environment():
    cfg = Config.load(env={})
    assert cfg.interval_s == 5.0 and cfg.history_limit == 20 and cfg.container == "index"
    assert cfg.namespaces == () and cfg.peering == "recengine" and cfg.priority is None


def test_values_come_from_the_environment():
    cfg = Config.load(env={"RECENGINE_OPERATOR_INTERVAL_S": "2.5",
                           "RECENGINE_OPERATOR_HISTORY_LIMIT": "5",
                           "RECENGINE_OPERATOR_NAMESPACES": "a, b,",
                           "RECENGINE_OPERATOR_PEERING": "",
                           "RECENGINE_OPERATOR_PRIORITY": "100",
                           "RECENGINE_OTHER": "ignored"})
    assert cfg.interval_s == 2.5 and cfg.history_limit == 5
    assert cfg.namespaces == ("a", "b") and cfg.peering == "" and cfg.priority == 100


@pytest.mark.parametrize(("key", "value"), [
    ("RECENGINE_OPERATOR_INTERVAL_S", "soon"),
    ("RECENGINE_OPERATOR_INTERVAL_S", "0"),
    ("RECENGINE_OPERATOR_HISTORY_LIMIT", "0"),
    ("RECENGINE_OPERATOR_PRIORITY", "-1"),
])
def test_a_bad_value_is_one_readable_error(key, value):
    with pytest.raises(ConfigError, match=key.removeprefix("RECENGINE_OPERATOR_").lower()):
        Config.load(env={key: value})


def test_every_setting_is_documented():
    from recengine.declare import docs_of

    assert [name for name, doc in docs_of(Config).items() if not doc] == []


def test_values_are_parsed_as_the_services_parse_them():
    with pytest.raises(ConfigError, match=r"setting history_limit = '5x' is not a valid int "
                                          r"\(RECENGINE_OPERATOR_HISTORY_LIMIT\)"):
        Config.load(env={"RECENGINE_OPERATOR_HISTORY_LIMIT": "5x"})
    cfg = Config.load(env={"RECENGINE_OPERATOR_PRIORITY": " ",
                           "RECENGINE_OPERATOR_CONTAINER": " ix "})
    assert cfg.priority is None and cfg.container == "ix"


def test_the_shared_metrics_url_is_read_from_the_services_variable_and_shown_redacted():
    cfg = Config.load(env={"RECENGINE_METRICS_URL": "statsd://user:pw@graphite:8125",
                           "RECENGINE_OPERATOR_METRICS_URL": "statsd://ignored:8125"})
    assert cfg.metrics_url == "statsd://user:pw@graphite:8125"
    assert "pw@" not in repr(cfg) and "metrics_url='statsd://user:***@graphite:8125'" in repr(cfg)
    assert Config.load(env=cfg.to_env()) == cfg


def test_to_env_round_trips_lists_and_unset_numbers():
    cfg = Config.load(env={"RECENGINE_OPERATOR_NAMESPACES": "a,b",
                           "RECENGINE_OPERATOR_IDLE_S": "0"})
    assert Config.load(env=cfg.to_env()) == cfg
    assert cfg.to_env()["RECENGINE_OPERATOR_PRIORITY"] == ""


def test_the_operator_readme_lists_every_setting():
    from pathlib import Path

    from recengine.declare import settings_of

    readme = (Path(__file__).resolve().parents[2] / "operator" / "README.md").read_text()
    for s in settings_of(Config):
        assert f"| `{s.name.upper()}` |" in readme, s.name
