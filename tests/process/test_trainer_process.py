"""The trainer as a real process: crash safety, restart, freshness, configuration errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from support.api import wait_for_user_answer

from recengine import serve
from recengine.backends.files import FileArtifactStore, FileEventSource
from recengine.config import Settings
from recengine.sources import decode
from recengine.synth import SynthConfig, write_stream
from recengine.trainer.run import build_trainer
from recengine.versions import load_version

pytestmark = pytest.mark.process

RECENGINE = [sys.executable, "-m", "recengine.cli"]


def _count(path: Path) -> tuple[int, int]:
    src = FileEventSource(path, follow=False)
    good = bad = 0
    while raws := src.poll(10_000, 0):
        g, b = decode(raws, src.fmt)
        good, bad = good + len(g), bad + len(b)
    return good, bad


def test_trainer_killed_repeatedly_applies_every_event_exactly_once(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_stream(events, SynthConfig(events=120_000, users=3_000, items=1_500, seed=3,
                                     malformed_rate=0.01))
    valid, malformed = _count(events)
    flags = ["--data-dir", str(tmp_path), "--follow", "false", "--batch-size", "500",
             "--checkpoint-every-events", "2000", "--publish-every-events", "15000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([*RECENGINE, "trainer", *flags], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 3.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    done = subprocess.run([*RECENGINE, "trainer", *flags], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 2, "the stream finished before the trainer could be killed"
    line = next(x for x in done.stderr.splitlines() if "stopped:" in x)
    assert f"{valid} applied" in line and f"{malformed} rejected" in line
    dlq = (tmp_path / "events.dlq.jsonl").read_text().splitlines()
    assert len(dlq) == malformed
    assert all(json.loads(x)["reason"] for x in dlq)

    # The crashed-and-restarted trainer ends exactly where an uninterrupted one does.
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    settings = Settings.load({"data_dir": str(clean_dir), "events_url": f"file://{events}",
                              "follow": False, "batch_size": 500,
                              "publish_every_events": 10**9}, env={})
    clean = build_trainer(settings)
    clean.run()
    crashed = load_version(FileArtifactStore(tmp_path / "artifacts"), "latest")
    uninterrupted = load_version(FileArtifactStore(clean_dir / "artifacts"), "latest")
    assert crashed.item_ids == uninterrupted.item_ids
    np.testing.assert_array_equal(crashed.vectors, uninterrupted.vectors)


def test_a_bad_setting_stops_the_trainer_with_one_readable_line(tmp_path: Path) -> None:
    cases = [
        (["--events-url", "bogus://x"], "unknown scheme"),
        (["--events-url", f"file://{tmp_path}/missing.jsonl"], "does not exist"),
        (["--batch-size", "many"], "batch_size"),
        (["--growth", "-1"], "growth"),
    ]
    for flags, expected in cases:
        r = subprocess.run([*RECENGINE, "trainer", "--data-dir", str(tmp_path), *flags],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (flags, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (flags, r.stderr)


def test_recommend_reflects_events_posted_seconds_earlier(services, engine) -> None:
    env = {**serve.settings_env(services.settings.replace(follow=True,
                                                         flush_interval_s=0.2,
                                                         batch_latency_s=0.05)),
           "PYTHONUNBUFFERED": "1"}
    trainer = subprocess.Popen([*RECENGINE, "trainer"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        user = f"fresh-{random.randrange(10**9)}"
        posted = [{"user_id": user, "item_id": engine.known_item, "event": "view",
                   "ts": time.time()}]
        r = requests.post(f"{services.api}/events", json=posted, timeout=5)
        assert r.status_code == 202
        body = wait_for_user_answer(services.api, user, 60, interval_s=0.1)
        assert engine.known_item not in {x["item_id"] for x in body["items"]}
    finally:
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, err[-2000:]
