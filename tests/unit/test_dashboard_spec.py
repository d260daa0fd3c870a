"""The Grafana dashboards: generated from the registry, well-formed, querying registered names.

Whether each target returns data from a real Graphite, and whether each dashboard validates
against Grafana's schema, is checked in tests/observability/test_dashboards.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recengine import dashboards
from recengine.metric_names import graphite_paths, resolve

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "charts" / "recengine" / "dashboards"
BOARDS = {p.name: json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))}


def test_the_chart_dashboards_are_generated_from_the_spec():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_dashboards.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(BOARDS) == {"overview.json", "serving.json", "index.json", "trainer.json",
                           "operator.json"}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_target_reads_a_registered_metric(name):
    for panel, target in dashboards.targets(BOARDS[name]):
        paths = graphite_paths(target)
        assert paths, f"{panel['title']}: {target} reads no statsd path"
        for path in paths:
            resolve(path)  # ValueError names the path when nothing is written there


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_datasources_are_the_graphite_object(name):
    dash = BOARDS[name]
    for panel in dashboards.panels(dash):
        assert panel["datasource"] == {"type": "graphite", "uid": "recengine-graphite"}
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_have_unique_ids_and_do_not_overlap(name):
    dash = BOARDS[name]
    ids = [p["id"] for p in dashboards.panels(dash)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboards.panels(dash):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def test_dashboard_uids_are_unique_and_tagged():
    uids = [d["uid"] for d in BOARDS.values()]
    assert len(uids) == len(set(uids))
    assert all("recengine" in d["tags"] for d in BOARDS.values())
