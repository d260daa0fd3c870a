"""Write docs/configuration.md from the Settings dataclass (its field docstrings).

    python tools/gen_config_docs.py          # rewrite the file
    python tools/gen_config_docs.py --check  # exit 1 when it is out of date (used by a test)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from generated import write_or_check

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "services" / "recengine" / "config.py"
TARGET = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration reference

Every recengine process reads one settings object. Each setting comes, in increasing order of
precedence, from its default, from the environment variable `RECENGINE_<NAME>`, and from the
command-line flag `--<name-with-dashes>`. A bad value, URL or missing file stops the process
with one line on stderr and exit code 2.

Generated from `services/recengine/config.py` by `tools/gen_config_docs.py`; do not edit.

| setting (`--flag`) | environment | default | meaning |
|---|---|---|---|
"""


def render() -> str:
    src = SOURCE.read_text()
    cls = next(n for n in ast.parse(src).body
               if isinstance(n, ast.ClassDef) and n.name == "Settings")
    rows = []
    for i, node in enumerate(cls.body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name == "extra":
            continue
        default = ast.get_source_segment(src, node.value) if node.value else ""
        doc = ""
        nxt = cls.body[i + 1] if i + 1 < len(cls.body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            doc = " ".join(str(nxt.value.value).split()).replace("|", "\\|")
        flag = "--" + name.replace("_", "-")
        rows.append(f"| `{flag}` | `RECENGINE_{name.upper()}` | `{default}` | {doc} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    return write_or_check(TARGET, render(), sys.argv)


if __name__ == "__main__":
    sys.exit(main())
