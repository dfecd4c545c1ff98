#!/usr/bin/env bash
# Builds kubectl (for `kubectl kustomize` / `kubectl apply` in the tests and for operators
# without one) from the published k8s.io/kubectl module with the machine's Go. main.go here is
# upstream's cmd/kubectl main; go.mod/go.sum pin k8s.io/kubectl and friends to v$KUBECTL_VERSION.
#
# Usage:
#   hack/kubectl/build.sh            ensure kubectl is built; print its path as the last stdout line
#   hack/kubectl/build.sh --force    rebuild even if the cached binary looks good
#   hack/kubectl/build.sh --update   regenerate go.mod/go.sum from the pin below (needs the module
#                                    proxy), then build
#
# Progress goes to stderr; stdout carries only the binary path (last line).
# Cache: ${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}/kubectl-v<ver>/kubectl
# Go caches: shared with hack/controlplane/build.sh (<cache root>/controlplane/{gomodcache,gocache};
# override with REMEDIATOR_GOMODCACHE / REMEDIATOR_GOCACHE), so the k8s.io/* v0.36.3 packages both
# builds need are downloaded and compiled once (Go locks both caches).
# Cold (empty Go caches): ~4 CPU-minutes, about 2 minutes on 2 idle cores (6.5 minutes measured
# while other builds shared the cores); ~1 minute when hack/controlplane/build.sh has already
# filled the shared Go build cache. Warm (cached binary): about 0.1 s.
set -euo pipefail

KUBECTL_VERSION=0.36.3   # k8s.io/kubectl v$KUBECTL_VERSION == Kubernetes v1.${KUBECTL_VERSION#0.}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}
DEST=$CACHE_ROOT/kubectl-v$KUBECTL_VERSION
BIN=$DEST/kubectl
STAMP=$DEST/.inputs.sha256
K8S_VERSION=1.${KUBECTL_VERSION#0.}

MODE=build
for arg in "$@"; do
  case $arg in
    --force) MODE=force ;;
    --update) MODE=update ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[kubectl %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Hash of what the binary is built from; a changed go.mod/go.sum/main.go means rebuild.
inputs_hash() { cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -d' ' -f1; }

cache_ok() {
  [[ -x $BIN && -f $STAMP ]] || return 1
  [[ $(cat "$STAMP") == "$(inputs_hash)" ]] || return 1
  local out
  out=$("$BIN" version --client 2>&1) || return 1
  [[ $out == *"Client Version: v$K8S_VERSION"* ]]
}

if [[ $MODE == build ]] && cache_ok; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go not found on PATH" >&2; exit 1; }

mkdir -p "$CACHE_ROOT"
# One build at a time per cache root; a second caller waits and then finds the cache.
exec 9>"$CACHE_ROOT/.kubectl-v$KUBECTL_VERSION.lock"
if command -v flock >/dev/null; then
  log "waiting for build lock $CACHE_ROOT/.kubectl-v$KUBECTL_VERSION.lock"
  flock 9
  if [[ $MODE == build ]] && cache_ok; then
    log "cached (built by another process): $BIN"
    echo "$BIN"
    exit 0
  fi
fi

export GOMODCACHE=${REMEDIATOR_GOMODCACHE:-$CACHE_ROOT/controlplane/gomodcache}
export GOCACHE=${REMEDIATOR_GOCACHE:-$CACHE_ROOT/controlplane/gocache}
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false -modcacherw -mod=readonly"
log "go: $(go version) GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE"

if [[ $MODE == update ]]; then
  log "update: go.mod pinned to k8s.io/kubectl v$KUBECTL_VERSION; go mod tidy"
  gover=$(go env GOVERSION); gover=${gover#go}
  tmp=$(mktemp)
  {
    echo "module alert-remediator/hack/kubectl"
    echo
    echo "go ${gover%.*}.0"
    echo
    echo "require ("
    printf '\tk8s.io/client-go v%s\n\tk8s.io/component-base v%s\n\tk8s.io/kubectl v%s\n' \
      "$KUBECTL_VERSION" "$KUBECTL_VERSION" "$KUBECTL_VERSION"
    echo ")"
  } >"$tmp"
  mv "$tmp" "$HERE/go.mod"
  rm -f "$HERE/go.sum"
  (cd "$HERE" && GOFLAGS="-modcacherw -mod=mod" go mod tidy)
fi

# The committed go.mod must match the pin above (else the cache dir name would lie).
grep -qE "^[[:space:]]*(require )?k8s.io/kubectl v$KUBECTL_VERSION\$" "$HERE/go.mod" \
  || { echo "build.sh: go.mod is not pinned to k8s.io/kubectl v$KUBECTL_VERSION; run build.sh --update" >&2; exit 1; }

mkdir -p "$DEST"
STAGE=$(mktemp -d "$DEST/.tmp.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
start=$SECONDS

log "downloading modules for k8s.io/kubectl v$KUBECTL_VERSION"
(cd "$HERE" && go mod download)
log "verifying module checksums"
(cd "$HERE" && go mod verify >/dev/null)

K8S_MINOR=$(cut -d. -f2 <<<"$K8S_VERSION")
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean"
done
log "building kubectl v$K8S_VERSION (cold: a few minutes on 2 cores, longer while another Go build runs)"
(cd "$HERE" && go build -ldflags="$LDFLAGS" -o "$STAGE/kubectl" .)

out=$("$STAGE/kubectl" version --client 2>&1) || { echo "build.sh: built kubectl does not run: $out" >&2; exit 1; }
[[ $out == *"Client Version: v$K8S_VERSION"* ]] \
  || { echo "build.sh: built kubectl reports '$out', want v$K8S_VERSION" >&2; exit 1; }

# Atomic publish: rename within one filesystem; the stamp is written after the binary.
log "installing into $DEST"
rm -f "$STAMP"
mv -f "$STAGE/kubectl" "$BIN"
inputs_hash >"$STAGE/stamp" && mv -f "$STAGE/stamp" "$STAMP"
cache_ok || { echo "build.sh: installed kubectl fails the version check" >&2; exit 1; }
log "done in $((SECONDS - start))s: $(du -h "$BIN" | cut -f1)"
echo "$BIN"
