"""The import graph keeps the contracts of pyproject.toml, and breaking one fails the lint.

``make lint`` (part of ``make test``, hence of CI) runs the same ``lint-imports``; these tests
check that the contracts catch what they are there for: a circle, an interface reaching up to
the backends, a caller naming an implementation, torch outside the trainer, the operator
reaching into the services.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> str:
    """``lint-imports`` on the tree at ``root``: its report, or AssertionError when it passes."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join((str(root / "services"), str(root / "operator")))}
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def _outcome(report: str, contract: str) -> str:
    """KEPT or BROKEN: the word that follows the contract's name in the report."""
    after = " ".join(report.split()).split(contract, 1)[1]
    return next(word for word in after.split() if word in ("KEPT", "BROKEN"))


def test_the_tree_keeps_every_import_contract() -> None:
    report = _lint(ROOT)
    assert report.startswith("exit 0\n"), report
    assert " broken" in report and ", 0 broken." in report


@pytest.mark.parametrize(("module", "line", "contract"), [
    # An interface reaching up to the registry: the circle the registry was made to end.
    ("services/recengine/stores.py", "from recengine.backends import registry",
     "Commands -> services -> backends"),
    # Two modules of one layer importing each other.
    ("services/recengine/events.py", "from recengine import sources",
     "No import circles between the modules of a package"),
    ("services/recengine/api/recommender.py",
     "from recengine.backends.redis_cache import RedisCache", "Only the registry builds backends"),
    ("services/recengine/index/searcher.py", "import torch", "Only the trainer imports torch"),
    ("operator/recengine_operator/policy.py", "from recengine.versions import load_version",
     "The operator imports no service code"),
])
def test_breaking_a_contract_fails_the_lint(tmp_path: Path, module: str, line: str,
                                            contract: str) -> None:
    for package in ("services/recengine", "operator/recengine_operator"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402, F401\n")
    report = _lint(tmp_path)
    assert report.startswith("exit 1\n"), report
    assert _outcome(report, contract) == "BROKEN", report
