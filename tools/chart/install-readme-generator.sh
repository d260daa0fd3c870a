#!/usr/bin/env bash
# Installs @bitnami/readme-generator-for-helm (the version and every dependency pinned by
# tools/chart/readme-generator/package-lock.json) outside the clone and prints the path of its
# `readme-generator` command on its last line.
#
#   tools/chart/install-readme-generator.sh   # -> ~/.cache/recengine/npm-readme-generator/<lock hash>/node_modules/.bin/readme-generator
#
# Idempotent and cached under $RECENGINE_CACHE (default ~/.cache/recengine), keyed by the hash of
# the lock file: a warm run only prints the path, a changed lock installs afresh beside the old
# one. The first run needs node, npm and the npm registry (a few seconds). Concurrent runs are
# serialised with flock. Used by tools/gen_chart_docs.py, which the chart tests run with --check.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PINS="$HERE/readme-generator"
CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
KEY="$(cat "$PINS/package.json" "$PINS/package-lock.json" | sha256sum | cut -c1-16)"
DEST="$CACHE/npm-readme-generator/$KEY"
BIN="$DEST/node_modules/.bin/readme-generator"

log() { printf '[readme-generator] %s\n' "$*" >&2; }
die() { printf '[readme-generator] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x $BIN && -f $DEST/.installed ]]; then
    echo "$BIN"
    exit 0
fi
command -v node >/dev/null 2>&1 || die "node is required (the generator runs on Node.js)"
command -v npm >/dev/null 2>&1 || die "npm is required (the generator comes from npm)"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if [[ ! -x $BIN || ! -f $DEST/.installed ]]; then
    cp "$PINS/package.json" "$PINS/package-lock.json" "$DEST/"
    log "npm ci in $DEST"
    (cd "$DEST" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts >&2) \
        || die "npm ci failed"
    [[ -x $BIN ]] || die "$BIN missing after npm ci"
    touch "$DEST/.installed"
fi
echo "$BIN"
