"""The requirements of this project's extras, and the check that a lock still matches them.

The images install their dependencies from hashed lock files, ``images/lock/<group>.txt``,
which ``images/lock.sh`` compiles from ``pyproject.toml`` (one source of truth). Each lock
records the extras it was compiled for and a digest of their requirements; a lock whose digest
no longer matches pyproject.toml is stale and the image build refuses it (images/Dockerfile
runs ``--check`` in its cheap ``wheel`` stage, so a stale lock fails in seconds).

    python3 requirements.py pyproject.toml backends,trainer            # print, one a line
    python3 requirements.py --digest pyproject.toml backends,trainer   # what lock.sh records
    python3 requirements.py --check pyproject.toml lock/*.txt          # exit 1 when stale

Self-references (``recengine[trainer,plot]``) are followed. An extra the project does not
declare is reported on stderr and skipped, as ``pip install '.[extra]'`` does. Standard
library only: it runs in the build stage before anything is installed.
"""

from __future__ import annotations

import hashlib
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


def digest(reqs: list[str]) -> str:
    """sha256 of the requirements, independent of their order and of whitespace."""
    canonical = sorted({re.sub(r"\s+", "", r).lower() for r in reqs})
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def lock_header(lock: str) -> dict[str, str]:
    """The ``# key: value`` lines lock.sh writes at the top of a lock (extras, digest)."""
    header: dict[str, str] = {}
    with open(lock, encoding="utf-8") as fh:
        for line in fh:
            match = re.match(r"^#\s*(extras|requirements-digest):\s*(\S*)\s*$", line)
            if match:
                header[match.group(1)] = match.group(2)
    return header


def stale(pyproject: str, lock: str) -> str | None:
    """Why ``lock`` no longer matches ``pyproject``, or None when it does."""
    header = lock_header(lock)
    if "extras" not in header or "requirements-digest" not in header:
        return f"{lock}: no '# extras:' / '# requirements-digest:' header (not made by lock.sh)"
    want = digest(requirements(pyproject, header["extras"].split(",")))
    if header["requirements-digest"] != want:
        return (f"{lock}: compiled from other requirements than {pyproject}'s extras "
                f"{header['extras']} (digest {header['requirements-digest'][:12]}, now "
                f"{want[:12]}); run images/lock.sh")
    return None


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "--check":
        problems = [p for p in (stale(argv[1], lock) for lock in argv[2:]) if p]
        for problem in problems:
            print(f"requirements.py: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if len(argv) == 3 and argv[0] == "--digest":
        print(digest(requirements(argv[1], argv[2].split(","))))
        return 0
    if len(argv) in (1, 2) and not argv[0].startswith("--"):
        print("\n".join(requirements(argv[0], argv[1].split(",") if len(argv) == 2 else [])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
