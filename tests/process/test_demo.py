"""`recengine demo` on a fresh data directory, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process


def test_demo_trains_serves_and_answers_the_three_kinds_of_query() -> None:
    r = subprocess.run([sys.executable, "-m", "recengine.cli", "demo", "--events", "20000",
                        "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["events"] == 20000
    assert result["versions_published"] >= 2
    assert result["recall_at_10"] > result["popularity_recall_at_10"] > 0
    based_on = {name: q["based_on"] for name, q in result["api"].items()}
    assert based_on == {"known_user": "user", "unknown_user_known_item": "item",
                        "stranger": "popular"}
    assert all(len(q["items"]) == 5 for q in result["api"].values())
    assert result["seconds"] > 0
