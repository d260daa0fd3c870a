#!/usr/bin/env bash
# Regenerates the images' lock files, images/lock/<group>.txt, from pyproject.toml: every
# package of the group's extras, pinned with the sha256 of every file PyPI has for it, resolved
# for the images' platform (CPython 3.11 on Debian bookworm, x86_64, glibc 2.36) by uv, which
# reads the metadata PyPI serves beside each wheel and so downloads no wheel (torch included).
#
#   images/lock.sh            regenerate all three locks (run after changing a dependency)
#
# Each lock starts with the digest of the requirements it was compiled from
# (images/requirements.py --digest); the image build and tests/k8s/test_images.py refuse a lock
# whose digest no longer matches pyproject.toml. uv is installed once, pinned, into
# ~/.cache/recengine/uv-<version> (RECENGINE_CACHE).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
UV_VERSION=0.13.8
UV="$CACHE/uv-$UV_VERSION/bin/uv"
# group -> extras; images/Dockerfile installs serving.txt in api and index, trainer.txt in
# trainer, operator.txt in operator.
GROUPS_EXTRAS=(serving:backends trainer:backends,trainer operator:operator,backends)

if [[ ! -x "$UV" ]]; then
    python3 -m venv "$CACHE/uv-$UV_VERSION"
    "$CACHE/uv-$UV_VERSION/bin/pip" install --quiet "uv==$UV_VERSION"
fi

cd "$ROOT"
for entry in "${GROUPS_EXTRAS[@]}"; do
    group="${entry%%:*}" extras="${entry#*:}"
    out="images/lock/$group.txt"
    extra_args=()
    IFS=, read -ra names <<<"$extras"
    for name in "${names[@]}"; do extra_args+=(--extra "$name"); done
    digest="$(python3 images/requirements.py --digest pyproject.toml "$extras")"
    body="$("$UV" pip compile pyproject.toml "${extra_args[@]}" --generate-hashes \
        --python-version 3.11 --python-platform x86_64-manylinux_2_36 --no-header \
        --annotation-style line)"
    {
        echo "# Lock of recengine's image group '$group': extras $extras of pyproject.toml,"
        echo "# for CPython 3.11 on x86_64 glibc 2.36 (Debian bookworm). Generated; do not edit:"
        echo "# run images/lock.sh after changing a dependency in pyproject.toml."
        echo "# extras: $extras"
        echo "# requirements-digest: $digest"
        echo "$body"
    } >"$out.tmp"
    mv "$out.tmp" "$out"
    echo "lock.sh: $out ($(grep -c '^[a-z0-9]' "$out") packages)" >&2
done
