"""Write the chart's values.schema.json and its README's parameter tables from values.yaml.

    python tools/gen_chart_docs.py          # rewrite both files
    python tools/gen_chart_docs.py --check  # exit 1 when either is out of date (used by a test)

@bitnami/readme-generator-for-helm (pinned, installed outside the clone by
tools/chart/install-readme-generator.sh) reads the `## @param` lines of values.yaml: it fills
the "## Parameters" section of charts/recengine/README.md and writes a schema with the type,
default and description of every key. It cannot say more than a value's type, so the
constraints it cannot infer (enums, patterns, minimums, closed sections, the hardened security
context) live in charts/recengine/values.schema.constraints.yaml and are merged in here; that
file's header says how.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from generated import write_or_check

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "recengine"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
SCHEMA = CHART / "values.schema.json"
CONSTRAINTS = CHART / "values.schema.constraints.yaml"
INSTALL = ROOT / "tools" / "chart" / "install-readme-generator.sh"

Node = dict[str, Any]


def run_generator(workdir: Path) -> tuple[str, Node]:
    """The README with its parameter tables regenerated, and the generator's own schema."""
    installed = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True,
                               check=False)
    if installed.returncode != 0:
        raise SystemExit(f"installing the readme generator failed:\n{installed.stderr}")
    generator = installed.stdout.strip().splitlines()[-1]
    readme, schema = workdir / "README.md", workdir / "values.schema.json"
    readme.write_text(README.read_text())
    out = subprocess.run([generator, "--values", str(VALUES), "--readme", str(readme),
                          "--schema", str(schema)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        # Its ERROR lines name every key without `## @param` (and every @param without a key).
        log = (out.stdout + out.stderr).splitlines()
        problems = [line for line in log if "ERROR" in line] or log[-40:]
        raise SystemExit("readme-generator failed:\n" + "\n".join(problems))
    return readme.read_text(), json.loads(schema.read_text())


def merge(target: Node, patch: Node) -> None:
    """Merge ``patch`` into ``target``: mappings key by key, anything else replaced. An open
    ``additionalProperties`` in the patch makes the node a map, whose generated keys go."""
    extra = patch.get("additionalProperties")
    if extra is not None and extra is not False:
        target.pop("properties", None)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def inline_refs(node: Any, definitions: Node) -> Any:
    """``node`` with every ``$ref: "#/definitions/<name>"`` replaced by that definition, merged
    with the ref's siblings."""
    if isinstance(node, list):
        return [inline_refs(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    resolved = {key: inline_refs(value, definitions) for key, value in node.items()
                if key != "$ref"}
    if "$ref" not in node:
        return resolved
    name = node["$ref"].removeprefix("#/definitions/")
    if name not in definitions:
        raise SystemExit(f"{CONSTRAINTS.name}: unknown definition {node['$ref']}")
    base = copy.deepcopy(inline_refs(definitions[name], definitions))
    merge(base, resolved)
    return base


def value_nodes(schema: Node, prefix: str = "") -> list[tuple[str, Node]]:
    """(dotted path, schema node) of every key of the values tree."""
    found = []
    for key, child in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        found.append((path, child))
        found.extend(value_nodes(child, path))
    return found


def matches(pattern: str, path: str) -> bool:
    want, have = pattern.split("."), path.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def whole_numbers_are_integers(node: Node) -> None:
    """The generator types every number ``number`` (JavaScript has no integer type)."""
    for _, child in value_nodes(node):
        if child.get("type") == "number" and type(child.get("default")) is int:
            child["type"] = "integer"


def close_sections(node: Node) -> None:
    if "properties" in node:
        node.setdefault("additionalProperties", False)
        for child in node["properties"].values():
            close_sections(child)


def extra_descriptions() -> dict[str, str]:
    """``## @extra path text`` lines: descriptions of keys documented as a whole."""
    found = re.findall(r"^\s*## @extra (\S+) (.+)$", VALUES.read_text(), re.MULTILINE)
    return {path: text.strip() for path, text in found}


def build_schema(generated: Node) -> Node:
    spec = yaml.safe_load(CONSTRAINTS.read_text())
    definitions = spec.get("definitions", {})
    schema = copy.deepcopy(generated)
    whole_numbers_are_integers(schema)
    for path, text in extra_descriptions().items():
        nodes = [node for p, node in value_nodes(schema) if p == path]
        if not nodes:
            raise SystemExit(f"values.yaml: @extra {path} names no key")
        nodes[0].setdefault("description", text)
    for pattern, constraint in spec["values"].items():
        constraint = inline_refs(constraint, definitions)
        targets = [node for path, node in value_nodes(schema) if matches(pattern, path)]
        if not targets:
            raise SystemExit(f"{CONSTRAINTS.name}: {pattern} matches no key of values.yaml")
        for node in targets:
            merge(node, constraint)
    merge(schema, inline_refs(spec.get("root", {}), definitions))
    close_sections(schema)
    # $schema and title first, as a reader expects them.
    head = {key: schema.pop(key) for key in ("$schema", "title") if key in schema}
    return {**head, **schema}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        readme, generated = run_generator(Path(tmp))
    schema = json.dumps(build_schema(generated), indent=2, ensure_ascii=False) + "\n"
    # Both files are checked (or written) even when the first one differs.
    stale = [write_or_check(README, readme, argv), write_or_check(SCHEMA, schema, argv)]
    return max(stale)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
