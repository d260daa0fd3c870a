"""What the doc generators share: write a generated file, or check that it is current.

    python tools/gen_config_docs.py          # rewrite docs/configuration.md
    python tools/gen_config_docs.py --check  # exit 1 when it is out of date (used by a test)
"""

from __future__ import annotations

from pathlib import Path


def write_or_check(target: Path, text: str, argv: list[str]) -> int:
    """Write ``text`` to ``target``; with ``--check`` in ``argv``, write nothing and return 1
    (saying which command regenerates it) when the file differs."""
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is out of date: run python {argv[0]}")
            return 1
        return 0
    target.write_text(text)
    return 0
