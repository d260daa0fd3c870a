#!/usr/bin/env bash
# Builds recengine's container images without a Docker daemon: buildah (vfs storage, chroot
# isolation) on top of a Debian bookworm base made by debootstrap. Idempotent; everything slow
# is cached under ~/.cache/recengine (override with RECENGINE_CACHE):
#
#   images/debootstrap-bookworm-python3.tar   the base root filesystem (about 25 s to make)
#   buildah/storage                           buildah's image store, incl. the layer cache
#   buildah/tmp                               buildah's RUN --mount=type=cache dirs (pip cache)
#
# vfs keeps a full copy of the root filesystem per layer: past RECENGINE_BUILDAH_MAX_GB (default
# 12) of storage, untagged images are pruned before the next build.
#
# Usage:
#   tools/k8s/images.sh setup                  install buildah + debootstrap, make the base image
#   tools/k8s/images.sh build TARGET [TAG]     build images/Dockerfile --target TARGET
#                                              (TAG default localhost/recengine-TARGET:dev)
#   tools/k8s/images.sh save TARGET FILE       write the built image as an OCI archive
#   tools/k8s/images.sh buildah ARGS...        run buildah with the same storage settings
#   tools/k8s/images.sh base                   print the base image's name
#
# The Dockerfile's default base is python:3.11-slim-bookworm; no registry is reachable here, so
# the build passes BASE_IMAGE=<the debootstrap base> (Debian's python3 is 3.11 on bookworm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
SUITE=bookworm
BASE_TAR="$CACHE/images/debootstrap-$SUITE-python3.tar"
BASE_IMAGE="localhost/recengine-base:$SUITE-python3"
STORAGE="$CACHE/buildah/storage"
RUNROOT="$CACHE/buildah/run"
# buildah keeps RUN --mount=type=cache directories under $TMPDIR/buildah-cache-<uid>; pointing
# TMPDIR into the cache keeps pip's download cache across builds (and across `buildah prune`).
export TMPDIR="$CACHE/buildah/tmp"
mkdir -p "$TMPDIR" "$STORAGE" "$RUNROOT" "$(dirname "$BASE_TAR")"

bah() {
    buildah --root "$STORAGE" --runroot "$RUNROOT" --storage-driver vfs "$@"
}

log() { echo "images.sh: $*" >&2; }

ensure_tools() {
    local missing=()
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
}

ensure_base_tar() {
    [[ -s "$BASE_TAR" ]] && return 0
    log "debootstrap $SUITE (minbase + python3) -> $BASE_TAR"
    local dir
    dir="$(mktemp -d "$CACHE/images/rootfs.XXXXXX")"
    # python3 (not only python3-minimal): the services need the full standard library
    # (sqlite3, ssl, venv). No pip, no compiler: the Dockerfile copes with that.
    debootstrap --variant=minbase --include=python3,ca-certificates "$SUITE" "$dir" \
        http://deb.debian.org/debian >&2
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" --numeric-owner -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$dir"
}

ensure_base_image() {
    if bah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    ensure_base_tar
    log "importing $BASE_TAR as $BASE_IMAGE"
    local ctr mnt
    ctr="$(bah from --quiet scratch)"
    mnt="$(bah mount "$ctr")"
    tar -C "$mnt" --numeric-owner -xf "$BASE_TAR"
    bah umount "$ctr" >/dev/null
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["python3"]' --os linux --arch amd64 "$ctr"
    bah commit --quiet --format docker "$ctr" "$BASE_IMAGE" >/dev/null
    bah rm "$ctr" >/dev/null
}

# vfs stores every layer as a full copy of its root filesystem, so the layer cache grows by
# gigabytes per source change. Past the cap, untagged images (stale cache) are dropped before
# a build: that build is then cold except for pip's download cache.
MAX_STORAGE_GB="${RECENGINE_BUILDAH_MAX_GB:-12}"

prune_if_large() {
    local used_gb
    used_gb=$(( $(du -sk "$STORAGE" 2>/dev/null | cut -f1) / 1024 / 1024 ))
    if (( used_gb > MAX_STORAGE_GB )); then
        log "buildah storage at ${used_gb} GB (cap ${MAX_STORAGE_GB} GB): pruning untagged images"
        # Working containers left by interrupted builds or runs pin their images.
        bah rm --all >/dev/null 2>&1 || true
        bah rmi --prune >/dev/null 2>&1 || true
    fi
}

cmd_build() {
    local target="$1" tag="${2:-localhost/recengine-$1:dev}"
    shift $(($# < 2 ? $# : 2))
    ensure_tools
    ensure_base_image
    prune_if_large
    # Where egress goes through a TLS-intercepting proxy, the host's CA bundle (which trusts it)
    # replaces the image's during RUN steps only; it never ends up in a layer.
    local ca=()
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        ca=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    fi
    # --format docker: the OCI image config has no HEALTHCHECK; docker's keeps it.
    bah bud --isolation chroot --layers --force-rm --pull=never --format docker "${ca[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --target "$target" --tag "$tag" \
        --file "$ROOT/images/Dockerfile" "$@" "$ROOT" >&2
    echo "$tag"
}

case "${1:-}" in
    setup)
        ensure_tools
        ensure_base_image
        echo "$BASE_IMAGE"
        ;;
    build)
        [[ $# -ge 2 ]] || { echo "usage: $0 build TARGET [TAG] [buildah bud args]" >&2; exit 2; }
        shift
        cmd_build "$@"
        ;;
    save)
        [[ $# -eq 3 ]] || { echo "usage: $0 save TARGET FILE" >&2; exit 2; }
        bah push "localhost/recengine-$2:dev" "oci-archive:$3"
        ;;
    buildah)
        shift
        bah "$@"
        ;;
    base)
        echo "$BASE_IMAGE"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
