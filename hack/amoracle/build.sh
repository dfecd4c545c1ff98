#!/usr/bin/env bash
# Builds amoracle (main.go here): Alertmanager's own matcher parsers and regex matching behind a
# JSON-lines pipe, for the differential matcher tests. go.mod/go.sum pin
# github.com/prometheus/alertmanager to v$AM_VERSION, the release receiver/matchers mirrors.
#
# Usage:
#   hack/amoracle/build.sh            ensure amoracle is built; print its path as the last stdout line
#   hack/amoracle/build.sh --force    rebuild even if the cached binary looks good
#   hack/amoracle/build.sh --update   regenerate go.mod/go.sum from the pin below (needs the module
#                                     proxy), then build
#
# Progress goes to stderr; stdout carries only the binary path (last line).
# Cache: ${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}/amoracle-v<ver>/amoracle
# Go caches: shared with hack/controlplane/build.sh (<cache root>/controlplane/{gomodcache,gocache};
# override with REMEDIATOR_GOMODCACHE / REMEDIATOR_GOCACHE).
# Cold (empty Go caches): about 30 s on 2 cores (28 MB of modules downloaded, the standard
# library and Alertmanager's matcher packages compiled); about 1 s when only the binary is
# missing (Go caches warm, e.g. after the control plane build); warm (cached binary): 0.05 s.
set -euo pipefail

AM_VERSION=0.35.0   # github.com/prometheus/alertmanager v$AM_VERSION

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}
DEST=$CACHE_ROOT/amoracle-v$AM_VERSION
BIN=$DEST/amoracle
STAMP=$DEST/.inputs.sha256

MODE=build
for arg in "$@"; do
  case $arg in
    --force) MODE=force ;;
    --update) MODE=update ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[amoracle %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Hash of what the binary is built from; a changed go.mod/go.sum/main.go means rebuild.
inputs_hash() { cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -d' ' -f1; }

# The binary answers a request the way Alertmanager does (a smoke test, not the test suite).
smoke() {
  local out
  out=$(printf '%s\n' '{"text":"a=b,"}' | "$1" 2>&1) || return 1
  [[ $out == *'"fallback":{"ok":true'* ]]
}

cache_ok() {
  [[ -x $BIN && -f $STAMP ]] || return 1
  [[ $(cat "$STAMP") == "$(inputs_hash)" ]] || return 1
  smoke "$BIN"
}

if [[ $MODE == build ]] && cache_ok; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go not found on PATH" >&2; exit 1; }

mkdir -p "$CACHE_ROOT"
# One build at a time per cache root; a second caller waits and then finds the cache.
exec 9>"$CACHE_ROOT/.amoracle-v$AM_VERSION.lock"
if command -v flock >/dev/null; then
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
  log "update: go.mod pinned to github.com/prometheus/alertmanager v$AM_VERSION; go mod tidy"
  gover=$(go env GOVERSION); gover=${gover#go}
  printf 'module alert-remediator/hack/amoracle\n\ngo %s.0\n\nrequire github.com/prometheus/alertmanager v%s\n' \
    "${gover%.*}" "$AM_VERSION" >"$HERE/go.mod"
  rm -f "$HERE/go.sum"
  (cd "$HERE" && GOFLAGS="-modcacherw -mod=mod" go mod tidy)
fi

# The committed go.mod must match the pin above (else the cache dir name would lie).
grep -qE "^[[:space:]]*(require )?github.com/prometheus/alertmanager v$AM_VERSION\$" "$HERE/go.mod" \
  || { echo "build.sh: go.mod is not pinned to alertmanager v$AM_VERSION; run build.sh --update" >&2; exit 1; }

mkdir -p "$DEST"
STAGE=$(mktemp -d "$DEST/.tmp.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
start=$SECONDS

log "downloading modules for alertmanager v$AM_VERSION"
(cd "$HERE" && go mod download)
log "verifying module checksums"
(cd "$HERE" && go mod verify >/dev/null)
log "building amoracle"
(cd "$HERE" && go build -ldflags="-s -w" -o "$STAGE/amoracle" .)
smoke "$STAGE/amoracle" || { echo "build.sh: the built amoracle fails its smoke test" >&2; exit 1; }

# Atomic publish: rename within one filesystem; the stamp is written after the binary.
log "installing into $DEST"
rm -f "$STAMP"
mv -f "$STAGE/amoracle" "$BIN"
inputs_hash >"$STAGE/stamp" && mv -f "$STAGE/stamp" "$STAMP"
cache_ok || { echo "build.sh: installed amoracle fails the check" >&2; exit 1; }
log "done in $((SECONDS - start))s: $(du -h "$BIN" | cut -f1)"
echo "$BIN"
