"""The settings machinery: one parser per type, redaction, and declarations checked at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recengine.declare import URL, Declared, Secret, docs_of, redact_url, settings_of
from recengine.errors import ConfigError


class Example(Declared, env_prefix="EX_", env_names={"shared": "OTHER_SHARED"}):
    """A settings class with one field of every supported kind."""

    text: str = "a"
    """Some text."""
    count: int = 1
    """A count."""
    ratio: float = 0.5
    """A ratio."""
    flag: bool = True
    """A switch."""
    limit: int | None = None
    """An optional number."""
    names: tuple[str, ...] = ()
    """A list."""
    token: Secret = ""
    """A secret."""
    shared: URL = "off"
    no_doc: int = 0


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("text", "  spaced  ", "spaced"),
    ("count", " 42 ", 42),
    ("ratio", "1e-3", 0.001),
    ("flag", "Off", False),
    ("flag", "YES", True),
    ("limit", "", None),
    ("limit", "7", 7),
    ("names", " a, b ,,c ", ("a", "b", "c")),
])
def test_text_from_a_variable_or_a_flag_becomes_the_same_value(name: str, raw: str,
                                                                value: object) -> None:
    env_name = "EX_" + name.upper()
    assert getattr(Example.load(env={env_name: raw}), name) == value
    assert getattr(Example.load({name: raw}, env={}), name) == value


@pytest.mark.parametrize(("name", "raw", "kind"), [
    ("count", "1.5", "int"),
    ("ratio", "half", "float"),
    ("flag", "flase", "bool; use 1/0, true/false, yes/no, on/off"),
    ("limit", "none", "int or empty"),
])
def test_a_bad_text_names_the_setting_the_type_and_the_source(name: str, raw: str,
                                                              kind: str) -> None:
    env_name = "EX_" + name.upper()
    with pytest.raises(ConfigError) as from_env:
        Example.load(env={env_name: raw})
    assert str(from_env.value) == f"setting {name} = {raw!r} is not a valid {kind} ({env_name})"
    with pytest.raises(ConfigError) as from_flag:
        Example.load({name: raw}, env={})
    flag = "--" + name.replace("_", "-")
    assert str(from_flag.value) == f"setting {name} = {raw!r} is not a valid {kind} ({flag})"


def test_a_field_can_be_read_from_a_variable_outside_the_prefix() -> None:
    assert Example.load(env={"OTHER_SHARED": "statsd://h:1", "EX_SHARED": "x"}).shared == (
        "statsd://h:1")
    assert {s.name: s.env for s in settings_of(Example)}["shared"] == "OTHER_SHARED"


def test_repr_hides_secrets_and_url_passwords() -> None:
    ex = Example.load({"token": "t0ken", "shared": "redis://:pw@cache:6379"}, env={})
    assert repr(ex) == ("Example(text='a', count=1, ratio=0.5, flag=True, limit=None, names=(), "
                        "token='***', shared='redis://:***@cache:6379', no_doc=0)")
    assert "token=''" in repr(Example.load(env={}))  # an empty secret shows that it is empty


def test_replace_parses_and_checks_like_load() -> None:
    ex = Example.load(env={})
    assert ex.replace(count="3", names=["x"]).names == ("x",)
    with pytest.raises(ConfigError, match="setting flag = 'maybe' is not a valid bool"):
        ex.replace(flag="maybe")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        ex.replace(colour="red")


def test_to_env_round_trips_every_kind() -> None:
    ex = Example.load({"text": "t", "count": 3, "ratio": 0.1 + 0.2, "flag": False, "limit": 9,
                       "names": ("a", "b"), "token": "s", "shared": "mongodb://u:p@h/db"},
                      env={})
    assert Example.load(env=ex.to_env()) == ex
    assert ex.to_env()["OTHER_SHARED"] == "mongodb://u:p@h/db"  # the child needs the password


def test_docs_come_from_the_attribute_docstrings() -> None:
    docs = docs_of(Example)
    assert docs["limit"] == "An optional number."
    assert docs["shared"] == "" and docs["no_doc"] == ""


def test_an_unsupported_type_or_an_unknown_env_name_fails_at_declaration() -> None:
    with pytest.raises(TypeError, match="setting when: no parser for type"):
        class Bad(Declared, env_prefix="B_"):
            when: dict[str, int] = None  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"env_names of undeclared settings: \['colour'\]"):
        class Typo(Declared, env_prefix="T_", env_names={"colour": "COLOUR"}):
            color: str = ""


@pytest.mark.parametrize(("url", "shown"), [
    ("mongodb://app:hunter2@db:27017/recs", "mongodb://app:***@db:27017/recs"),
    ("mongodb+srv://app:hunter2@cluster.example.net/recs", "mongodb+srv://app:***@cluster.example.net/recs"),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("redis://default:p:w@cache", "redis://default:***@cache"),
    ("mongodb://app:hun/ter@db/recs", "mongodb://app:***@db/recs"),  # '/' not encoded
    ("app:hunter2@db:27017", "app:***@db:27017"),  # no scheme
    ("mongodb://app@db/recs", "mongodb://app@db/recs"),  # a user, no password
    ("file:///data/a:b@c.jsonl", "file:///data/a:b@c.jsonl"),  # an '@' in a path
    ("http://index:8081", "http://index:8081"),
    ("kafka://broker:9092/movies.events", "kafka://broker:9092/movies.events"),
])
def test_redact_url_hides_the_password_and_nothing_else(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_operator_can_import_the_settings_without_the_services_dependencies() -> None:
    code = ("import sys, recengine.declare, recengine.config\n"
            "print(sorted(m for m in ('numpy', 'faiss', 'falcon', 'torch', 'pydantic')"
            " if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
