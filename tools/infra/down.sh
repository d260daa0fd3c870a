#!/usr/bin/env bash
# Stop servers started by tools/infra/up.sh (all, or the ones named), by their recorded PIDs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT/tests"
exec "${PYTHON:-python3}" -m support.servers down "$@"
