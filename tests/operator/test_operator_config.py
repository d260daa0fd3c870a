"""The operator's one configuration object, from RECENGINE_OPERATOR_* variables."""

from __future__ import annotations

import pytest

from recengine.errors import ConfigError
from recengine_operator.config import Config


def test_defaults_without_environment():
    cfg = Config.from_env({})
    assert cfg.interval_s == 5.0 and cfg.history_limit == 20 and cfg.container == "index"
    assert cfg.namespaces == () and cfg.peering == "recengine" and cfg.priority is None


def test_values_come_from_the_environment():
    cfg = Config.from_env({"RECENGINE_OPERATOR_INTERVAL_S": "2.5",
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
        Config.from_env({key: value})


def test_every_setting_is_documented():
    import ast
    import inspect
    from itertools import pairwise

    from recengine_operator import config

    tree = ast.parse(inspect.getsource(config.Config))
    body = tree.body[0].body
    documented = {
        node.target.id for node, nxt in pairwise(body)
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)}
    fields = {node.target.id for node in body if isinstance(node, ast.AnnAssign)}
    assert fields == documented


def test_the_operator_readme_lists_every_setting():
    from dataclasses import fields
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "operator" / "README.md").read_text()
    for f in fields(Config):
        assert f"| `{f.name.upper()}` |" in readme, f.name
