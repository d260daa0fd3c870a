"""Quality on a small generated stream, with the defaults: the engine beats the stronger of the
two popularity baselines (and self-tuning never serves worse than the ranking it started from).

The generator is a fixture here, not the judge: the judged figures are those of
``bench/quality.py`` on real streams (``docs/quality.md``)."""

from __future__ import annotations

from pathlib import Path

from recengine.config import Settings
from recengine.evaluate import evaluate_file
from recengine.synth import SynthConfig, write_stream


def test_the_defaults_beat_the_stronger_popularity_baseline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_stream(path, SynthConfig(events=15_000, users=600, items=400, seed=11,
                                   malformed_rate=0.0))
    settings = Settings.load({"data_dir": str(tmp_path), "follow": False}, env={})
    tuned = evaluate_file(path, settings)
    fixed = evaluate_file(path, settings.replace(self_tuning=False))
    assert tuned["evaluated"] > 10_000
    assert tuned["popularity_recall_at_10"] == max(tuned["plain_popularity_recall_at_10"],
                                                   tuned["decayed_popularity_recall_at_10"])
    assert tuned["recall_at_10"] > 1.3 * tuned["popularity_recall_at_10"]
    # Same events, same baselines: self-tuning only changes the ranking in force.
    assert fixed["popularity_recall_at_10"] == tuned["popularity_recall_at_10"]
    assert tuned["recall_at_10"] >= 0.97 * fixed["recall_at_10"]
    assert len(tuned["tuning"]["population"]) == settings.tuning_population
    assert fixed["tuning"]["population"][0]["incumbent"]
