#!/usr/bin/env bash
# Start the integration-test servers for development and print their URLs.
#
#   tools/infra/up.sh [kafka|mongo|redis|graphite]...   (default: all)
#   tools/infra/down.sh [names]...                      stops them (by PID)
#   PYTHON=... tools/infra/up.sh                        interpreter with confluent-kafka,
#                                                        pymongo and redis (default: python3)
#
# Servers keep running after this script exits. Data and logs live under
# ~/.cache/recengine/dev/<name>/ and survive down/up. Ports are the test defaults
# (Kafka 19092, FerretDB 27018, Redis 16379, graphite-web 18080, statsd 18125) unless busy;
# a test session started while these run picks other free ports.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT/tests"
exec "${PYTHON:-python3}" -m support.servers up "$@"
