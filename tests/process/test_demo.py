"""`recengine demo` on a fresh data directory, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recengine.events import EventError, parse_json

pytestmark = pytest.mark.process


def test_demo_trains_serves_and_answers_the_three_kinds_of_query(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "recengine.cli", "demo", "--events", "20000",
                        "--json", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["data_dir"] == str(tmp_path)
    # Every valid event of the generated stream is learned once; every malformed line is
    # rejected once.
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    malformed = 0
    for line in lines:
        try:
            parse_json(line)
        except EventError:
            malformed += 1
    assert result["events"] == result["applied"] == 20000 == len(lines) - malformed
    assert result["rejected"] == malformed > 0
    assert result["versions_published"] >= 2
    assert result["recall_at_10"] > result["popularity_recall_at_10"] > 0
    based_on = {name: q["based_on"] for name, q in result["api"].items()}
    assert based_on == {"known_user": "user", "unknown_user_known_item": "item",
                        "stranger": "popular"}
    for answer in result["api"].values():
        assert answer["version"] == result["versions_published"]  # the newest is served
        assert len(answer["items"]) == len(set(answer["items"])) == 5
    like = result["api"]["unknown_user_known_item"]
    assert like["query"]["item_id"] not in like["items"]
