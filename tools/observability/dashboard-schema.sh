#!/usr/bin/env bash
# Prints the path of dashboard.schema.json: the JSON Schema of a Grafana dashboard, generated
# from Grafana's own TypeScript types (@grafana/schema) with ts-json-schema-generator.
#
#   tools/observability/dashboard-schema.sh        # -> ~/.cache/recengine/grafana-schema/<ver>/dashboard.schema.json
#
# Idempotent and cached outside the clone under $RECENGINE_CACHE (default ~/.cache/recengine),
# keyed by the versions below: a warm run only prints the path. The first run needs node, npm
# and the npm registry (about half a minute). Concurrent runs are serialised with flock.
# Used by tests/observability/test_dashboards.py to validate charts/recengine/dashboards/*.json.
set -euo pipefail

GRAFANA_SCHEMA_VERSION="${GRAFANA_SCHEMA_VERSION:-13.2.3}"
TS_JSON_SCHEMA_GENERATOR_VERSION="${TS_JSON_SCHEMA_GENERATOR_VERSION:-2.10.0}"
# ts-json-schema-generator 2.10 needs typescript >=5.9 <7.
TYPESCRIPT_VERSION="${TYPESCRIPT_VERSION:-5.9.3}"

CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
DEST="$CACHE/grafana-schema/$GRAFANA_SCHEMA_VERSION"
OUT="$DEST/dashboard.schema.json"
TYPES="node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"

log() { printf '[dashboard-schema] %s\n' "$*" >&2; }
die() { printf '[dashboard-schema] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -s $OUT ]]; then
    echo "$OUT"
    exit 0
fi
command -v node >/dev/null 2>&1 || die "node is required (the schema generator runs on Node.js)"
command -v npm >/dev/null 2>&1 || die "npm is required (@grafana/schema comes from npm)"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if [[ ! -s $OUT ]]; then
    cd "$DEST"
    [[ -f package.json ]] || printf '{"name": "recengine-grafana-schema", "private": true}\n' > package.json
    if [[ ! -f $TYPES || ! -x node_modules/.bin/ts-json-schema-generator ]]; then
        log "npm install @grafana/schema@$GRAFANA_SCHEMA_VERSION" \
            "ts-json-schema-generator@$TS_JSON_SCHEMA_GENERATOR_VERSION typescript@$TYPESCRIPT_VERSION"
        npm install --no-audit --no-fund --loglevel=error --ignore-scripts \
            "@grafana/schema@$GRAFANA_SCHEMA_VERSION" \
            "ts-json-schema-generator@$TS_JSON_SCHEMA_GENERATOR_VERSION" \
            "typescript@$TYPESCRIPT_VERSION" >&2 || die "npm install failed"
    fi
    [[ -f $TYPES ]] || die "$TYPES missing after npm install"
    log "generating $OUT"
    node_modules/.bin/ts-json-schema-generator -p "$TYPES" -t Dashboard --no-type-check \
        --additional-properties -o "$OUT.tmp" >&2 || die "ts-json-schema-generator failed"
    mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
