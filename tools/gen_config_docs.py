"""Write docs/configuration.md from the settings declarations: the services' ``Settings`` and
the operator's ``Config``, imported (names, variables, flags, types, defaults and docstrings as
:mod:`recengine.declare` reads them).

    python tools/gen_config_docs.py          # rewrite the file
    python tools/gen_config_docs.py --check  # exit 1 when it is out of date (used by a test)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document this checkout's declarations, whichever recengine is installed.
sys.path[:0] = [str(ROOT / "services"), str(ROOT / "operator")]

from generated import write_or_check  # noqa: E402

from recengine.config import Settings  # noqa: E402
from recengine.declare import Declared, Redact, Setting, docs_of, settings_of  # noqa: E402
from recengine_operator.config import Config  # noqa: E402

TARGET = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration reference

Every recengine process reads one settings object. Each setting comes, in increasing order of
precedence, from its default, from the environment variable `RECENGINE_<NAME>`, and from the
command-line flag `--<name-with-dashes>`; a flag is parsed exactly as its variable is. A bad
value, URL or missing file stops the process with one line on stderr and exit code 2.

A `bool` is one of `1/0`, `true/false`, `yes/no`, `on/off` (any case). A `secret` is never shown
(logs, errors, `repr`); a `URL` is shown without the password it may carry.

Generated from `services/recengine/config.py` and `operator/recengine_operator/config.py` by
`tools/gen_config_docs.py`; do not edit.

## Services (`recengine …`, the API and index apps)

"""

OPERATOR = """
## Operator (`RECENGINE_OPERATOR_*`)

Read from the environment only (`python -m recengine_operator`, `kopf run -m
recengine_operator`); the same types and parsing as above.

"""


def _type(setting: Setting) -> str:
    if setting.redact is Redact.VALUE:
        return "secret"
    if setting.redact is Redact.PASSWORD:
        return "URL"
    return setting.kind.name


def _default(setting: Setting) -> str:
    text = setting.kind.text(setting.default)
    return f"`{text}`" if text else "(empty)"


def table(cls: type[Declared], flags: bool) -> str:
    """The Markdown table of the settings ``cls`` declares."""
    docs = docs_of(cls)
    head = ["setting (`--flag`)"] if flags else []
    rows = ["| " + " | ".join([*head, "environment", "type", "default", "meaning"]) + " |",
            "|" + "---|" * (len(head) + 4)]
    for s in settings_of(cls):
        cells = [f"`{s.flag}`"] if flags else []
        cells += [f"`{s.env}`", _type(s), _default(s), docs[s.name].replace("|", "\\|")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def render() -> str:
    return HEADER + table(Settings, flags=True) + OPERATOR + table(Config, flags=False)


def main() -> int:
    return write_or_check(TARGET, render(), sys.argv)


if __name__ == "__main__":
    sys.exit(main())
