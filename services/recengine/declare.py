"""Settings classes declared once: typed fields with docstrings, one parser for environment
variables and flags, secrets hidden wherever a value is shown.

A settings class (:class:`recengine.config.Settings`, ``recengine_operator.config.Config``)
subclasses :class:`Declared` and declares each setting as one annotated attribute with its
default and a docstring. The class becomes a frozen dataclass with:

- ``load(overrides, env)``: defaults < environment (``<prefix><NAME>``) < overrides (the CLI's
  flags). A string, from either, goes through the same parser; a bad one raises
  :class:`~recengine.errors.ConfigError` with one line naming the setting and where the value
  came from.
- ``replace(**changes)``: a copy, parsed and validated again.
- ``to_env()``: the environment in which ``load`` rebuilds the same object (how settings reach
  a gunicorn worker).
- a ``repr`` that shows a :data:`Secret` as ``'***'`` and a :data:`URL` without its password;
  error messages about such a value are redacted the same way.

:func:`settings_of` lists the declared settings (name, variable, flag, kind, default) and
:func:`docs_of` their docstrings, for the CLI and ``tools/gen_config_docs.py``. This module
imports the standard library only, so the operator uses it without the services' dependencies
(numpy, faiss, falcon).

Why not pydantic-settings. Measured on the 2-core development machine (Python 3.11, loaded by
other builds, so the smallest of several runs; ``python -X importtime``, wall time by
``date +%s%N`` around the command):

===================================================  ===============
``import recengine.config``, before (dataclass)       18 ms
``import recengine.config`` on this module            19 ms
the same ~60 fields as a pydantic ``BaseModel``       130-210 ms
the same fields as a pydantic-settings class          225-250 ms
``recengine api --help``, before and after alike      60-67 ms wall
``import recengine.api.app`` (falcon, numpy, faiss)   350-490 ms wall
===================================================  ===============

pydantic would add 110-230 ms to every ``recengine`` command (``--help`` three to four times
slower) and a third to each API and index worker's import; only the operator would get it
free (``kubernetes`` imports pydantic already). It would not buy correctness either: the
environment source of pydantic-settings cannot be handed a mapping (``load(env=...)``, which
the tests use), decodes collections as JSON (the operator's namespaces are ``a, b``), matches
variable names case-insensitively, reads ``.env`` files, and reads the environment again on
every construction (a ``replace`` would pick it up). Overriding all
of that leaves what this module is: one loader over dataclasses, a few hundred lines, whose
parser is tested value by value. Field docstrings are read from the source with ``ast`` on
demand, as pydantic's ``use_attribute_docstrings`` does, but only when documentation is asked
for, never at start-up.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import os
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self, dataclass_transform

from recengine.errors import ConfigError


class Redact(enum.Enum):
    """What of a value is hidden when it is shown."""

    VALUE = "value"
    """The whole value (a key, a password)."""
    PASSWORD = "password"
    """The password of a URL (``scheme://user:PASSWORD@host``)."""


#: A text setting whose value is never shown (repr, errors): ``api_key: Secret = ""``.
Secret = Annotated[str, Redact.VALUE]
#: A backend URL setting; shown without the password it may carry.
URL = Annotated[str, Redact.PASSWORD]

HIDDEN = "***"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of a URL's ``user:password@`` part is, if it has one.

    Errs towards hiding: when the authority (up to the first ``/``, ``?`` or ``#``) has a
    ``:`` but no ``@`` and the rest of the URL has one (a password holding one of those
    unencoded), everything up to the last ``@`` counts as user information."""
    start = url.find("://")
    start = start + 3 if start >= 0 else 0
    rest = url[start:]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        at = rest.rfind("@")
    colon = rest.find(":", 0, min(at, end)) if at > 0 else -1
    if colon < 0 or colon + 1 == at:
        return None
    return start + colon + 1, start + at


def password_of(url: str) -> str:
    """The password in a URL's ``user:password@`` part ('' when there is none)."""
    span = _password_span(url)
    return url[span[0]:span[1]] if span else ""


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    span = _password_span(url)
    return url[:span[0]] + HIDDEN + url[span[1]:] if span else url


def hide(text: str, value: str) -> str:
    """``text`` (an error message) with every occurrence of the secret ``value`` hidden."""
    return text.replace(value, HIDDEN) if value else text


@dataclass(frozen=True)
class Kind:
    """How the values of one Python type are read from text and written back."""

    name: str
    """What the documentation and error messages call it."""
    parse: Callable[[str], Any]
    """Text (a variable or a flag) -> value; ValueError when the text is not one."""
    text: Callable[[Any], str]
    """Value -> the text ``parse`` reads back as the same value."""
    check: Callable[[Any], Any]
    """A value given as a Python object -> the value (ValueError when of the wrong type)."""
    hint: str = ""
    """Appended to the error message of a bad value."""


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(raw)


def _checker(*types_: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) and bool not in types_:
            raise ValueError(value)
        if not isinstance(value, types_):
            raise ValueError(value)
        return value
    return check


def _check_float(value: Any) -> float:
    return float(_checker(int, float)(value))


def _check_optional_int(value: Any) -> int | None:
    return None if value is None else _checker(int)(value)


def _check_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
        raise ValueError(value)
    return tuple(value)


KINDS: dict[Any, Kind] = {
    str: Kind("text", str.strip, str, _checker(str)),
    int: Kind("int", int, str, _checker(int)),
    float: Kind("float", float, repr, _check_float),
    bool: Kind("bool", _parse_bool, lambda v: "true" if v else "false", _checker(bool),
               hint="use " + ", ".join(f"{t}/{f}" for t, f in zip(_TRUE, _FALSE, strict=True))),
    int | None: Kind("int or empty", lambda raw: int(raw) if raw.strip() else None,
                     lambda v: "" if v is None else str(v), _check_optional_int),
    tuple[str, ...]: Kind("comma-separated list",
                          lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip()),
                          ",".join, _check_names),
}


@dataclass(frozen=True)
class Setting:
    """One declared setting of a settings class."""

    name: str
    env: str
    """The environment variable it is read from."""
    kind: Kind
    default: Any
    redact: Redact | None

    @property
    def flag(self) -> str:
        """The command-line flag (``--batch-size``)."""
        return "--" + self.name.replace("_", "-")

    def shown(self, value: Any) -> str:
        """``repr`` of ``value`` as it may be shown: a secret hidden, a URL's password too."""
        if self.redact is Redact.VALUE and value:
            return repr(HIDDEN)
        if self.redact is Redact.PASSWORD and isinstance(value, str):
            return repr(redact_url(value))
        return repr(value)

    def value(self, given: Any, source: str) -> Any:
        """``given`` (text from ``source``, or a Python value) as this setting's value."""
        try:
            if isinstance(given, str):
                return self.kind.parse(given)
            return self.kind.check(given)
        except (ValueError, TypeError):
            hint = f"; {self.kind.hint}" if self.kind.hint else ""
            raise ConfigError(f"setting {self.name} = {self.shown(given)} is not a valid "
                              f"{self.kind.name}{hint} ({source})") from None


def _type_key(hint: Any) -> Any:
    """``hint`` comparable whichever way a union was spelled (``int | None``, ``Optional``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return frozenset(typing.get_args(hint))
    return hint


_KINDS_BY_TYPE = {_type_key(t): kind for t, kind in KINDS.items()}


def _kind_of(name: str, hint: Any) -> tuple[Kind, Redact | None]:
    redact = None
    if typing.get_origin(hint) is Annotated:
        hint, *marks = typing.get_args(hint)
        redact = next((m for m in marks if isinstance(m, Redact)), None)
    kind = _KINDS_BY_TYPE.get(_type_key(hint))
    if kind is None:
        raise TypeError(f"setting {name}: no parser for type {hint!r}")
    return kind, redact


@dataclass_transform(frozen_default=True)
class Declared:
    """Base of a settings class; ``class Config(Declared, env_prefix="APP_")``.

    ``env_names`` maps a field to a variable outside the prefix (one the services share)."""

    _settings: ClassVar[dict[str, Setting]]

    def __init_subclass__(cls, *, env_prefix: str, env_names: Mapping[str, str] | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, repr=False)(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
        names = dict(env_names or {})
        settings = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  (a dataclass by now)
            kind, redact = _kind_of(f.name, hints[f.name])
            settings[f.name] = Setting(f.name, names.pop(f.name, env_prefix + f.name.upper()),
                                       kind, f.default, redact)
        if names:
            raise TypeError(f"env_names of undeclared settings: {sorted(names)}")
        cls._settings = settings

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             env: Mapping[str, str] | None = None) -> Self:
        """Defaults < environment (``os.environ`` unless ``env``) < ``overrides`` (CLI flags;
        ``None`` means not given)."""
        env = os.environ if env is None else env
        values = {s.name: s.value(env[s.env], s.env)
                  for s in cls._settings.values() if s.env in env}
        for name, given in (overrides or {}).items():
            if given is not None:
                setting = cls._setting(name)
                values[name] = setting.value(given, setting.flag)
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with some settings changed (parsed and validated again)."""
        values = {name: self._setting(name).value(given, "replace")
                  for name, given in changes.items()}
        return dataclasses.replace(self, **values)  # type: ignore[type-var]

    def to_env(self) -> dict[str, str]:
        """The environment variables from which ``load`` builds an equal object."""
        return {s.env: s.kind.text(getattr(self, s.name)) for s in self._settings.values()}

    @classmethod
    def _setting(cls, name: str) -> Setting:
        try:
            return cls._settings[name]
        except KeyError:
            raise ConfigError(f"unknown setting {name!r}") from None

    def __repr__(self) -> str:
        shown = (f"{s.name}={s.shown(getattr(self, s.name))}" for s in self._settings.values())
        return f"{type(self).__name__}({', '.join(shown)})"


def settings_of(cls: type[Declared]) -> tuple[Setting, ...]:
    """The settings ``cls`` declares, in declaration order."""
    return tuple(cls._settings.values())


def docs_of(cls: type[Declared]) -> dict[str, str]:
    """Each setting's docstring, whitespace folded ('' when it has none). Reads the source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = typing.cast(ast.ClassDef, tree.body[0]).body
    docs = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return {s.name: docs.get(s.name, "") for s in settings_of(cls)}
