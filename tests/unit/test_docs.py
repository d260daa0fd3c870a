"""Documentation that is derived from code stays in step with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_settings() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_config_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec make test")


def test_metrics_reference_matches_the_registry() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_metrics_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
