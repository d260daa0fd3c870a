#!/usr/bin/env bash
# Builds (once, cached by version) what the Kubernetes tests run on 127.0.0.1 without Docker:
# kube-apiserver, kube-controller-manager and kube-scheduler from the k8s.io/kubernetes module,
# etcd 3.5, and kwok (fake nodes and pod lifecycles). Everything comes from the Go module proxy.
#
#   tools/k8s/control-plane.sh            # build what is missing; print the bin directory
#
# Output: $RECENGINE_CACHE/k8s-v$K/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,
# etcd,kwok}. A cold build takes 10-20+ minutes and 3-5 GB of memory on 2 cores; a warm run
# returns at once. The build runs at the lowest CPU priority so it never starves other work.
set -euo pipefail

K=1.32.5
S=0.32.5
MINOR=32
ETCD=3.5.21
KWOK=0.7.0
CACHE=${RECENGINE_CACHE:-$HOME/.cache/recengine}
OUT=$CACHE/k8s-v$K
BIN=$OUT/bin
mkdir -p "$BIN"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

say() { printf 'control-plane: %s\n' "$*" >&2; }

build_kube() {
  local work=$OUT/src/kube
  mkdir -p "$work"
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
  {
    printf 'module local/k8sbins\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K"
    for m in $staging; do printf '\tk8s.io/%s => k8s.io/%s v%s\n' "$m" "$m" "$S"; done
    printf ')\n'
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n)\n' > "$work/tools.go"
  (cd "$work" && nice -n 19 go mod tidy)
  # k8s.io/kubernetes pins GODEBUG defaults in its go.mod; carry them over.
  local kmod
  kmod=$(cd "$work" && go list -m -f '{{.GoMod}}' k8s.io/kubernetes)
  if grep -q '^godebug' "$kmod"; then
    grep -E '^godebug|^\s+[a-z0-9]+=' "$kmod" | sed -n '/^godebug/,/^)/p' >> "$work/go.mod" || true
  fi
  local v="-X k8s.io/component-base/version.gitVersion=v$K -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=v$K"
  (cd "$work" && nice -n 19 go build -p 2 -trimpath -ldflags "-s -w $v" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler) || \
  (cd "$work" && nice -n 19 go build -p 2 -trimpath -ldflags "-s -w -checklinkname=0 $v" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)
}

build_etcd() {
  local work=$OUT/src/etcd
  mkdir -p "$work"
  printf 'module local/etcdbin\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD" > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/tools.go"
  (cd "$work" && nice -n 19 go mod tidy && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  GOBIN=$BIN nice -n 19 go install "sigs.k8s.io/kwok/cmd/kwok@v$KWOK"
}

[ -x "$BIN/etcd" ] || { say "building etcd $ETCD"; build_etcd; }
[ -x "$BIN/kwok" ] || { say "building kwok $KWOK"; build_kwok; }
if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kube-controller-manager" ] || [ ! -x "$BIN/kube-scheduler" ]; then
  say "building kube-apiserver, kube-controller-manager, kube-scheduler v$K (10-20+ min cold)"
  build_kube
fi
"$BIN/kube-apiserver" --version | grep -q "v$K" || { say "kube-apiserver does not report v$K"; exit 1; }
echo "$BIN"
