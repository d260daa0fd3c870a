"""Fixtures: a small trained engine on disk, and gunicorn processes serving it (session-wide)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recengine.config import Settings
from recengine.synth import SynthConfig, write_stream
from recengine.trainer.run import build_trainer

from .gunicorn import Services, gunicorn_services


@dataclass
class Engine:
    """A data directory with a stream, a trained state and published versions."""

    settings: Settings
    data_dir: Path
    events_path: Path
    applied: int
    rejected: int
    known_user: str
    known_item: str


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    data_dir = tmp_path_factory.mktemp("engine")
    events = data_dir / "events.jsonl"
    write_stream(events, SynthConfig(events=20_000, users=1_000, items=800, seed=11))
    settings = Settings.load({"data_dir": str(data_dir), "follow": False,
                              "publish_every_events": 10_000, "flush_interval_s": 0.2},
                             env={})
    trainer = build_trainer(settings)
    trainer.run()
    lr = trainer.learner
    busiest = max(range(len(lr.users)), key=lambda r: int(lr.user_events[r]))
    return Engine(settings, data_dir, events, trainer.c.applied, trainer.c.rejected,
                  lr.users.id(busiest), lr.popular(1)[0][0])


@pytest.fixture(scope="session")
def services(engine: Engine) -> Iterator[Services]:
    """The index service and the API under real gunicorn, on free ports of 127.0.0.1."""
    with gunicorn_services(engine.settings, engine.data_dir, workers=2) as running:
        yield running
