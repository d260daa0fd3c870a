"""Write charts/recengine/dashboards/*.json from recengine.dashboards (on the metric registry).

    python tools/gen_dashboards.py          # rewrite the files (and remove stale ones)
    python tools/gen_dashboards.py --check  # exit 1 when they are out of date (used by a test)

The chart provisions every ``dashboards/*.json`` into Grafana (``.Files.Glob``). Edit the
panels in ``services/recengine/dashboards.py``, not the JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

from recengine.dashboards import build, to_json

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "charts" / "recengine" / "dashboards"


def main() -> int:
    wanted = {name: to_json(dash) for name, dash in build().items()}
    present = {p.name: p.read_text() for p in TARGET.glob("*.json")} if TARGET.exists() else {}
    if "--check" in sys.argv:
        stale = sorted(n for n in set(wanted) | set(present) if wanted.get(n) != present.get(n))
        if stale:
            print(f"{TARGET} is out of date ({', '.join(stale)}): "
                  "run python tools/gen_dashboards.py")
            return 1
        return 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in set(present) - set(wanted):
        (TARGET / name).unlink()
    for name, text in wanted.items():
        if present.get(name) != text:
            (TARGET / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
