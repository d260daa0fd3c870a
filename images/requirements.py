"""Print the requirements of this project and some of its extras, one per line.

Used by images/Dockerfile to install the dependencies in a layer of their own (invalidated only
when pyproject.toml changes) before the project itself, so a source change rebuilds seconds,
not minutes. The list comes from the project's own metadata, never from a copy of it.

    python3 requirements.py pyproject.toml backends,trainer

Self-references (``recengine[trainer,plot]``) are followed. An extra the project does not
declare is reported on stderr and skipped, as ``pip install '.[extra]'`` does.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """Core dependencies plus those of ``extras`` (followed through self-references)."""
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    own = re.compile(rf"^\s*{re.escape(project['name'])}\s*\[([^\]]*)\]\s*$", re.IGNORECASE)
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0).strip()
        if not extra or extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            print(f"requirements.py: {project['name']} has no extra {extra!r}; skipped",
                  file=sys.stderr)
            continue
        for req in optional[extra]:
            match = own.match(req)
            if match:
                todo.extend(match.group(1).split(","))
            else:
                out.append(req)
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: requirements.py PYPROJECT [EXTRA,EXTRA...]")
    extras = sys.argv[2].split(",") if len(sys.argv) == 3 else []
    print("\n".join(requirements(sys.argv[1], extras)))
