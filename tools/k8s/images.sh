#!/usr/bin/env bash
# Builds and runs recengine's container images without a Docker daemon: buildah (chroot
# isolation) on top of a Debian bookworm base made by debootstrap. Idempotent; everything slow is
# cached under ~/.cache/recengine (RECENGINE_CACHE):
#
#   images/debootstrap-bookworm-python3.tar   the base root filesystem (about 25 s to make)
#   buildah/storage-<driver>                  buildah's image store, incl. the layer cache
#   buildah/storage-<driver>.stamps/          inputs digest of each tag built (see `build`)
#   buildah/tmp                               buildah's RUN --mount=type=cache dirs (pip cache)
#   wheels/                                   the locks' wheels, downloaded once (see below)
#
# Storage driver (RECENGINE_BUILDAH_DRIVER=overlay|fuse-overlayfs|vfs, default: the first that
# works here): native overlay stores each layer as a diff; fuse-overlayfs (Debian package,
# installed when needed) does the same where the kernel refuses overlay mounts; vfs copies the
# whole root filesystem per layer and per working container (a 5 GB torch layer costs 5 GB per
# step), so it is the last resort.
#
# Usage:
#   tools/k8s/images.sh setup                  install buildah + debootstrap, make the base image
#   tools/k8s/images.sh build TARGET [TAG] [BUD ARGS...]
#                                              build images/Dockerfile --target TARGET (TAG
#                                              default localhost/recengine-TARGET:dev); skipped
#                                              when TAG was built from the same inputs
#   tools/k8s/images.sh run TAG [-v HOST:PATH]... [-e K=V]... [--entrypoint CMD] [-- ARGS...]
#                                              run TAG's entrypoint as a pod would: its user, a
#                                              read-only root, tmpfs /tmp, the host's network
#   tools/k8s/images.sh save TARGET FILE       write the built image as an OCI archive
#   tools/k8s/images.sh buildah ARGS...        run buildah with the same storage settings
#   tools/k8s/images.sh storage                print the driver and the store's size in MB
#   tools/k8s/images.sh base                   print the base image's name
#
# Disk: every build removes its working containers, also when interrupted (trap) or killed (the
# next build removes them); containers named run-* belong to callers (`run`, the tests) and are
# left alone. Before and after each build, a store larger than RECENGINE_BUILDAH_MAX_GB
# (default 12; RECENGINE_BUILDAH_MAX_MB overrides) loses its dangling images (stale layer
# cache), then other recengine tags, until it fits. Figures: images/README.md.
#
# The Dockerfile's default base is python:3.11-slim-bookworm; no registry is reachable here, so
# the build passes BASE_IMAGE=<the debootstrap base> (Debian's python3 is 3.11 on bookworm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
SUITE=bookworm
BASE_TAR="$CACHE/images/debootstrap-$SUITE-python3.tar"
BASE_IMAGE="localhost/recengine-base:$SUITE-python3"
BUILDAH_DIR="$CACHE/buildah"
# buildah keeps RUN --mount=type=cache directories under $TMPDIR/buildah-cache-<uid>; pointing
# TMPDIR into the cache keeps pip's download cache across builds, prunes and drivers.
export TMPDIR="$BUILDAH_DIR/tmp"
mkdir -p "$TMPDIR" "$(dirname "$BASE_TAR")"

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

# Whether an overlay mount (native, or through fuse-overlayfs) works on the cache's filesystem.
probe_overlay() {
    local dir rc=1
    dir="$(mktemp -d "$BUILDAH_DIR/probe.XXXXXX")"
    mkdir -p "$dir/lower" "$dir/upper" "$dir/work" "$dir/merged"
    local opts="lowerdir=$dir/lower,upperdir=$dir/upper,workdir=$dir/work"
    if [[ "$1" == native ]]; then
        mount -t overlay overlay -o "$opts" "$dir/merged" 2>/dev/null \
            && { umount "$dir/merged"; rc=0; }
    else
        fuse-overlayfs -o "$opts" "$dir/merged" 2>/dev/null \
            && { fusermount3 -u "$dir/merged" 2>/dev/null || umount "$dir/merged"; rc=0; }
    fi
    rm -rf "$dir"
    return "$rc"
}

choose_driver() {
    local want="${RECENGINE_BUILDAH_DRIVER:-auto}"
    mkdir -p "$BUILDAH_DIR"
    if [[ "$want" == auto || "$want" == overlay ]] && probe_overlay native; then
        echo overlay
        return
    fi
    if [[ "$want" == auto || "$want" == fuse-overlayfs ]] && [[ -c /dev/fuse ]]; then
        if ! command -v fuse-overlayfs >/dev/null 2>&1; then
            log "native overlay mounts refused here; installing fuse-overlayfs"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends fuse-overlayfs; } >&2 || true
        fi
        if command -v fuse-overlayfs >/dev/null 2>&1 && probe_overlay fuse; then
            echo fuse-overlayfs
            return
        fi
    fi
    [[ "$want" == auto || "$want" == vfs ]] || { log "driver $want does not work here"; exit 1; }
    echo vfs
}

DRIVER="$(choose_driver)"
STORAGE="${RECENGINE_BUILDAH_STORAGE:-$BUILDAH_DIR/storage-$DRIVER}"
RUNROOT="$STORAGE.run"
STAMPS="$STORAGE.stamps"
mkdir -p "$STORAGE" "$RUNROOT" "$STAMPS"
STORAGE_ARGS=(--root "$STORAGE" --runroot "$RUNROOT")
case "$DRIVER" in
    overlay) STORAGE_ARGS+=(--storage-driver overlay) ;;
    fuse-overlayfs) STORAGE_ARGS+=(--storage-driver overlay
                                   --storage-opt "overlay.mount_program=$(command -v fuse-overlayfs)") ;;
    vfs) STORAGE_ARGS+=(--storage-driver vfs) ;;
esac

bah() {
    buildah "${STORAGE_ARGS[@]}" "$@"
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
    log "importing $BASE_TAR as $BASE_IMAGE ($DRIVER storage)"
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

# Before the per-driver stores, images.sh kept one vfs store in buildah/storage, whose leftover
# working containers the cap never removed (issue #15: 53 GB). `setup` deletes it once no
# buildah process uses it.
remove_legacy_store() {
    local old="$BUILDAH_DIR/storage"
    [[ -d "$old" && "$STORAGE" != "$old" ]] && command -v pgrep >/dev/null 2>&1 || return 0
    if pgrep -f -- "--root $old " >/dev/null 2>&1; then
        log "the old store $old is in use; left for the next setup"
        return 0
    fi
    log "removing the old vfs store $old ($(du -sxm "$old" 2>/dev/null | cut -f1) MB)"
    buildah --root "$old" --runroot "$BUILDAH_DIR/run" --storage-driver vfs rm --all \
        >/dev/null 2>&1 || true
    rm -rf "$old" "$BUILDAH_DIR/run"
}

storage_mb() {
    # -x: not into the overlay mounts of running containers (they would count twice). A file
    # removed under du (a concurrent `buildah rm`) can make it fail: try again.
    local mb="" i
    for i in 1 2 3; do
        mb="$(du -sxm "$STORAGE" 2>/dev/null | cut -f1)" || true
        [[ -n "$mb" ]] && break
    done
    echo "${mb:-0}"
}

# Working containers that no caller owns: left by `buildah bud` (removed on success, not when
# it is interrupted or killed) or by a killed import. Callers name theirs run-*.
remove_build_containers() {
    local id name
    while read -r id name; do
        [[ -z "$id" || "$name" == run-* ]] && continue
        bah rm "$id" >/dev/null 2>&1 || true
    done < <(bah containers --all --noheading --format '{{.ContainerID}} {{.ContainerName}}' \
             2>/dev/null || true)
}

# RECENGINE_BUILDAH_MAX_MB, when set, overrides the cap in GB (the tests use small caps).
MAX_STORAGE_MB="${RECENGINE_BUILDAH_MAX_MB:-$(( ${RECENGINE_BUILDAH_MAX_GB:-12} * 1024 ))}"

# Past the cap: dangling images first (stale layer cache; repeated, as removing one can leave
# its parent dangling), then other tagged recengine images, never KEEP nor the base.
enforce_cap() {
    local keep="${1:-}" used
    used="$(storage_mb)"
    (( used > MAX_STORAGE_MB )) || return 0
    log "buildah storage at ${used} MB (cap ${MAX_STORAGE_MB} MB): pruning"
    remove_build_containers
    local i
    for i in 1 2 3 4 5 6; do
        bah rmi --prune >/dev/null 2>&1 || break
        (( $(storage_mb) > MAX_STORAGE_MB )) || break
    done
    if (( $(storage_mb) > MAX_STORAGE_MB )); then
        local name
        while read -r name; do
            [[ "$name" == "$keep" || "$name" == "$BASE_IMAGE" ]] && continue
            log "removing $name"
            bah rmi "$name" >/dev/null 2>&1 || true
            bah rmi --prune >/dev/null 2>&1 || true
            (( $(storage_mb) > MAX_STORAGE_MB )) || break
        done < <(bah images --noheading --format '{{.Name}}:{{.Tag}}' | grep recengine || true)
    fi
    log "buildah storage now $(storage_mb) MB"
}

# The digest of everything a build reads: the files of the build context (.dockerignore is an
# allow-list; its !entries are the context), the target, the tag, the extra arguments, the
# version, the base image and the storage driver.
inputs_digest() {
    local target="$1" tag="$2" version="$3"
    shift 3
    local allowed
    mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$ROOT/.dockerignore")
    {
        printf '%s\n' "$DRIVER" "$target" "$tag" "$version" "$@"
        bah inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE"
        (cd "$ROOT" && find "${allowed[@]}" -type f ! -path '*/__pycache__/*' \
            ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z \
            | xargs -0 sha256sum)
    } | sha256sum | cut -c1-32
}

project_version() {
    python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$ROOT/pyproject.toml"
}

# pip's HTTP cache (the Dockerfile's cache mount) stays empty where the proxy marks downloads
# uncacheable, as on our machines, and buildah drops it with its tmp dir anyway; so the wheels of
# a target's lock are downloaded once, on the host, into a wheelhouse that the build mounts
# (--no-index: installing the locked layer then needs no network). Checked against the lock's
# hashes by pip on download and again on install; files no lock names any more are removed.
WHEELHOUSE="$CACHE/wheels"
lock_of() {  # which images/lock/*.txt the Dockerfile installs in each target
    case "$1" in
        api | index) echo serving ;;
        trainer | operator) echo "$1" ;;
    esac
}

ensure_wheelhouse() {
    local lock="$ROOT/images/lock/$1.txt" stamp
    [[ -s "$lock" ]] || return 1
    stamp="$WHEELHOUSE/.complete-$(sha256sum "$lock" | cut -c1-16)"
    [[ -e "$stamp" ]] && return 0
    mkdir -p "$WHEELHOUSE"
    log "downloading the wheels of images/lock/$1.txt into $WHEELHOUSE"
    # Every platform tag Debian bookworm's pip accepts (glibc 2.36, x86_64).
    local platforms=() i
    for i in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${i}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
                --platform manylinux1_x86_64 --platform linux_x86_64)
    python3 -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps \
        --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 \
        --abi none "${platforms[@]}" --dest "$WHEELHOUSE" -r "$lock" >&2 || return 1
    python3 - "$WHEELHOUSE" "$ROOT"/images/lock/*.txt <<'PY'
import pathlib, re, sys
keep = set()
for lock in sys.argv[2:]:
    for name, version in re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", open(lock).read(), re.M):
        keep.add((re.sub(r"[-_.]+", "_", name).lower(), version))
for wheel in pathlib.Path(sys.argv[1]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    if (re.sub(r"[-_.]+", "_", name).lower(), version) not in keep:
        wheel.unlink()
PY
    touch "$stamp"
}

BUD_PID=""
on_build_signal() {
    local sig="$1"
    if [[ -n "$BUD_PID" ]]; then
        kill -s "$sig" "$BUD_PID" 2>/dev/null || true
        # buildah stops its RUN step and exits; give it 60 s.
        local i
        for i in $(seq 60); do kill -0 "$BUD_PID" 2>/dev/null || break; sleep 1; done
        kill -s KILL "$BUD_PID" 2>/dev/null || true
    fi
    log "build interrupted (SIG$sig): removing its working containers"
    exit $(( 128 + $(kill -l "$sig") ))
}

cmd_build() {
    local target="$1" tag="${2:-localhost/recengine-$1:dev}"
    shift $(($# < 2 ? $# : 2))
    ensure_tools
    # One build at a time per store: concurrent builds would fight over the cap, and every
    # container without a run-* name then belongs to this build.
    exec 9>"$STORAGE.lock"
    flock 9
    trap remove_build_containers EXIT
    trap 'on_build_signal INT' INT
    trap 'on_build_signal TERM' TERM
    trap 'on_build_signal HUP' HUP
    remove_build_containers
    ensure_base_image
    local version key stamp
    version="$(project_version)"
    # --no-cache changes how the image is built, not what it is built from.
    local arg key_args=()
    for arg in "$@"; do [[ "$arg" == --no-cache ]] || key_args+=("$arg"); done
    key="$(inputs_digest "$target" "$tag" "$version" "${key_args[@]}")"
    stamp="$STAMPS/$(echo "$tag" | tr '/:' '__')"
    if [[ " $* " != *" --no-cache "* && -s "$stamp" ]] \
        && [[ "$(cat "$stamp")" == "$key $(bah inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null)" ]]; then
        log "$tag is up to date (inputs $key); not rebuilt"
        echo "$tag"
        return 0
    fi
    rm -f "$stamp"
    enforce_cap ""
    # Where egress goes through a TLS-intercepting proxy, the host's CA bundle (which trusts it)
    # replaces the image's during RUN steps only; it never ends up in a layer.
    local ca=()
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        ca=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    fi
    local wheels=() lock
    lock="$(lock_of "$target")"
    if [[ -n "$lock" ]] && ensure_wheelhouse "$lock"; then
        wheels=(--volume "$WHEELHOUSE:/wheelhouse:ro" --build-arg PIP_FIND_LINKS=/wheelhouse
                --build-arg PIP_NO_INDEX=1)
    fi
    local started=$SECONDS rc=0
    # --format docker: the OCI image config has no HEALTHCHECK; docker's keeps it.
    bah bud --isolation chroot --layers --force-rm --pull=never --format docker "${ca[@]}" \
        "${wheels[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "RECENGINE_VERSION=$version" \
        --target "$target" --tag "$tag" --file "$ROOT/images/Dockerfile" "$@" "$ROOT" >&2 &
    BUD_PID=$!
    wait "$BUD_PID" || rc=$?
    BUD_PID=""
    (( rc == 0 )) || { log "build of $target failed (exit $rc)"; exit "$rc"; }
    echo "$key $(bah inspect --type image --format '{{.FromImageID}}' "$tag")" >"$stamp"
    log "built $tag in $(( SECONDS - started )) s ($DRIVER, store $(storage_mb) MB)"
    remove_build_containers
    enforce_cap "$tag"
    echo "$tag"
}

# Runs TAG's entrypoint the way a pod with readOnlyRootFilesystem does: the image's user, env
# and working directory; the root filesystem mounted read-only in a private mount namespace;
# /tmp a tmpfs; -v HOST:PATH bind mounts (PATH must exist in the image); the host's network.
# SIGTERM/SIGINT go to the entrypoint, whose exit status is this command's.
cmd_run() {
    local tag="$1"
    shift
    local volumes=() envs=() args=() entrypoint=""
    while (($#)); do
        case "$1" in
            -v) volumes+=("$2"); shift 2 ;;
            -e) envs+=("$2"); shift 2 ;;
            --entrypoint) entrypoint="$2"; shift 2 ;;
            --) shift; args=("$@"); break ;;
            *) args=("$@"); break ;;
        esac
    done
    local ctr="run-$$-$RANDOM" mnt spec
    bah from --pull-never --quiet --name "$ctr" "$tag" >/dev/null
    # shellcheck disable=SC2064  # expand $ctr now
    trap "bah rm '$ctr' >/dev/null 2>&1 || true" EXIT
    mnt="$(bah mount "$ctr")"
    # user:group, workdir, then the environment and the command, NUL-separated.
    spec="$(bah inspect --type image "$tag" | python3 -c '
import json, sys
cfg = json.load(sys.stdin)["Docker"]["config"]
root, extra_env, entrypoint, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
user, _, group = (cfg.get("User") or "0").partition(":")
if not group:
    group = "0"
    for line in open(root + "/etc/passwd"):
        f = line.split(":")
        if user in (f[0], f[2]):
            user, group = f[2], f[3]
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
env.update(e.split("=", 1) for e in extra_env.split("\n") if e)
if entrypoint:  # as docker run --entrypoint: replaces the entrypoint and the default command
    cmd = [entrypoint, *args]
else:
    cmd = (cfg.get("Entrypoint") or []) + (args or cfg.get("Cmd") or [])
out = [f"{user}:{group}", cfg.get("WorkingDir") or "/"] + [f"{k}={v}" for k, v in env.items()]
sys.stdout.write("\0".join([*out, "--", *cmd]))
' "$mnt" "$(printf '%s\n' "${envs[@]}")" "$entrypoint" "${args[@]}" | base64 -w0)"
    local binds=() v
    for v in "${volumes[@]}"; do binds+=("${v%%:*}" "${v#*:}"); done
    # shellcheck disable=SC2016  # expanded by the inner bash
    unshare --mount --propagation private bash -c '
        set -euo pipefail
        root="$1" spec="$2"; shift 2
        mount --bind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
        for f in /etc/resolv.conf /etc/hosts; do
            [[ -f "$root$f" ]] && mount --bind "$f" "$root$f"
        done
        while (($#)); do mount --bind "$1" "$root$2"; shift 2; done
        mount -o remount,bind,ro "$root"
        mapfile -d "" -t parts < <(echo "$spec" | base64 -d)
        userspec="${parts[0]}" workdir="${parts[1]}"
        parts=("${parts[@]:2}")
        for i in "${!parts[@]}"; do [[ "${parts[$i]}" == -- ]] && break; done
        exec chroot --userspec="$userspec" --groups="${userspec#*:}" "$root" \
            /usr/bin/env -i -C "$workdir" "${parts[@]:0:$i}" "${parts[@]:$((i + 1))}"
    ' run "$mnt" "$spec" "${binds[@]}" &
    local pid=$! rc=0
    trap 'kill -TERM $pid 2>/dev/null || true' TERM
    trap 'kill -INT $pid 2>/dev/null || true' INT
    while true; do
        wait "$pid" && rc=0 || rc=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    exit "$rc"
}

case "${1:-}" in
    setup)
        ensure_tools
        ensure_base_image
        remove_legacy_store
        echo "$BASE_IMAGE"
        ;;
    build)
        [[ $# -ge 2 ]] || { echo "usage: $0 build TARGET [TAG] [buildah bud args]" >&2; exit 2; }
        shift
        cmd_build "$@"
        ;;
    run)
        [[ $# -ge 2 ]] || { echo "usage: $0 run TAG [-v HOST:PATH]... [-e K=V]... [--entrypoint CMD] [-- ARGS]" >&2; exit 2; }
        shift
        cmd_run "$@"
        ;;
    save)
        [[ $# -eq 3 ]] || { echo "usage: $0 save TARGET FILE" >&2; exit 2; }
        bah push "localhost/recengine-$2:dev" "oci-archive:$3"
        ;;
    buildah)
        shift
        bah "$@"
        ;;
    storage)
        echo "$DRIVER $(storage_mb)"
        ;;
    base)
        echo "$BASE_IMAGE"
        ;;
    *)
        sed -n '2,40p' "$0" >&2
        exit 2
        ;;
esac
