"""Drawing the dashboards' panels and checking their targets through graphite-web's render API.

``recengine dashboards render --out DIR`` draws every panel (``format=png``), so the dashboards
can be looked at without a Grafana server; ``recengine dashboards check`` lists the targets
that return no data points. The dashboards come from :mod:`recengine.dashboards`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from recengine.dashboards import build, panels, targets


def _render_api(graphite: str, params: list[tuple[str, str]], timeout_s: float = 30.0) -> bytes:
    import requests

    r = requests.get(f"{graphite.rstrip('/')}/render", params=params, timeout=timeout_s)
    if r.status_code != 200:
        raise RuntimeError(f"graphite render {params}: HTTP {r.status_code}: {r.text[:300]}")
    return r.content


def datapoints(graphite: str, target: str, from_: str = "-15min") -> int:
    """How many non-null points ``target`` returns from graphite-web's render API."""
    data = json.loads(_render_api(graphite, [("target", target), ("format", "json"),
                                      ("from", from_), ("until", "now")]))
    return sum(1 for series in data for v, _ in series["datapoints"] if v is not None)


def check(graphite: str, from_: str = "-15min",
          dashboards: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str, str]]:
    """The (dashboard, panel, target) triples that return no data point."""
    empty = []
    for dash in (dashboards or build()).values():
        for p, t in targets(dash):
            if not datapoints(graphite, t, from_):
                empty.append((dash["title"], p["title"], t))
    return empty


#: Grafana unit ids as words for the y axis of a rendered PNG.
UNIT_WORDS = {"short": "", "none": "", "reqps": "per second", "percentunit": "ratio",
              "percent": "%", "ms": "ms", "s": "seconds"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "panel"


def render(out: str | Path, graphite: str, from_: str = "-15min",
           dashboards: dict[str, dict[str, Any]] | None = None, width: int = 900,
           height: int = 420) -> list[Path]:
    """Draw every panel (its targets, titled like the panel) to ``out/<dashboard>/NN-<panel>.png``
    through graphite-web's render API; returns the files written."""
    out = Path(out)
    written = []
    for file_name, dash in (dashboards or build()).items():
        folder = out / Path(file_name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for n, p in enumerate(panels(dash), start=1):
            ts = [t["target"] for t in p.get("targets", []) if t.get("target")]
            if not ts:
                continue
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            params = [("target", t) for t in ts] + [
                ("format", "png"), ("from", from_), ("until", "now"),
                ("title", f"{dash['title']}: {p['title']}"), ("width", str(width)),
                ("height", str(height)), ("bgcolor", "white"), ("fgcolor", "black"),
                ("majorGridLineColor", "bbbbbb"), ("minorGridLineColor", "e5e5e5"),
                ("lineWidth", "2"), ("lineMode", "connected"), ("hideLegend", "false"),
                ("vtitle", UNIT_WORDS.get(unit, unit)),
                ("_salt", str(time.time()))]
            path = folder / f"{n:02d}-{_slug(p['title'])}.png"
            path.write_bytes(_render_api(graphite, params))
            written.append(path)
    return written
