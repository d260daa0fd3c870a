"""The command line as a user calls it: generate, then evaluate a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

RECENGINE = [sys.executable, "-m", "recengine.cli"]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RECENGINE, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_eval_reads_a_movielens_style_tsv_as_is_and_plots_recall(tmp_path: Path) -> None:
    tsv = tmp_path / "ratings.tsv"
    r = _run("generate", "--out", str(tsv), "--format", "tsv", "--events", "15000",
             "--users", "800", "--items", "600")
    assert r.returncode == 0, r.stderr
    first = tsv.read_text().splitlines()[0].split("\t")
    assert len(first) == 3  # user, item, timestamp: no header, no event type
    png = tmp_path / "recall.png"
    r = _run("eval", "--events", str(tsv), "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result) >= {"events", "evaluated", "recall_at_10", "popularity_recall_at_10",
                           "events_per_second"}
    assert result["events"] == 15000
    assert 0 < result["evaluated"] < result["events"]
    assert result["recall_at_10"] > result["popularity_recall_at_10"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = _run("eval", "--events", str(tmp_path / "nope.tsv"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"recengine: configuration error: events file {tmp_path / 'nope.tsv'} does not exist"]


def test_csv_streams_are_evaluated_with_their_header_skipped(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    assert _run("generate", "--out", str(csv), "--format", "csv", "--events", "5000",
                "--users", "300", "--items", "200").returncode == 0
    r = _run("eval", "--events", str(csv), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["events"] == 5000
    assert result["rejected"] > 0  # the generator's malformed rows, counted, never fatal


def test_a_bad_flag_and_the_same_bad_variable_stop_the_command_alike(tmp_path: Path) -> None:
    by_flag = _run("api", "--data-dir", str(tmp_path), "--follow", "flase")
    by_env = _run("api", "--data-dir", str(tmp_path), RECENGINE_FOLLOW="flase")
    line = ("recengine: configuration error: setting follow = 'flase' is not a valid bool; "
            "use 1/0, true/false, yes/no, on/off")
    assert (by_flag.returncode, by_env.returncode) == (2, 2)
    assert by_flag.stderr.strip().splitlines() == [f"{line} (--follow)"]
    assert by_env.stderr.strip().splitlines() == [f"{line} (RECENGINE_FOLLOW)"]


def test_a_bad_url_stops_the_command_without_showing_its_password(tmp_path: Path) -> None:
    r = _run("api", "--data-dir", str(tmp_path),
             RECENGINE_USERS_URL="mongodb://app:hunter2@db:port/recs")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "recengine: configuration error: users URL 'mongodb://app:***@db:port/recs' is "
        "malformed: Port could not be cast to integer value as 'port'"]


def test_generate_takes_a_time_scale(tmp_path: Path) -> None:
    streams = {}
    for scale in ("seconds", "days"):
        out = tmp_path / f"{scale}.tsv"
        r = _run("generate", "--out", str(out), "--format", "tsv", "--events", "3000",
                 "--users", "200", "--items", "150", "--time-scale", scale)
        assert r.returncode == 0, r.stderr
        streams[scale] = [line.split("\t") for line in out.read_text().splitlines()]
    fast, slow = streams["seconds"], streams["days"]
    assert [row[:2] for row in fast] == [row[:2] for row in slow]
    span_fast = float(fast[-1][2]) - float(fast[0][2])
    span_slow = float(slow[-1][2]) - float(slow[0][2])
    assert span_slow / span_fast == pytest.approx(86_400, rel=1e-3)
    r = _run("generate", "--out", str(tmp_path / "x.tsv"), "--time-scale", "fortnights")
    assert r.returncode == 2 and "time scale" in r.stderr
