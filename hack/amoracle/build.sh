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

# The steps every build here shares (cache root, log, lock, Go settings, install): hack/lib.sh.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TOOL=amoracle
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=$(cache_root)
DEST=$CACHE_ROOT/amoracle-v$AM_VERSION
BIN=$DEST/amoracle
STAMP=$DEST/.inputs.sha256

parse_mode 2,18 "--force --update" "$@"

# The binary answers a request the way Alertmanager does (a smoke test, not the test suite).
smoke() {
  local out
  out=$(printf '%s\n' '{"text":"a=b,"}' | "$1" 2>&1) || return 1
  [[ $out == *'"fallback":{"ok":true'* ]]
}

cache_ok() { stamp_ok "$BIN" "$STAMP" "$HERE" && smoke "$BIN"; }

claim_build "$BIN" "$CACHE_ROOT/.amoracle-v$AM_VERSION.lock"

shared_go_env "$CACHE_ROOT"
log_go_env

if [[ $MODE == update ]]; then
  log "update: go.mod pinned to github.com/prometheus/alertmanager v$AM_VERSION; go mod tidy"
  regenerate_module "$HERE" "$(printf 'module alert-remediator/hack/amoracle\n\ngo %s\n\nrequire github.com/prometheus/alertmanager v%s\n' \
    "$(go_directive)" "$AM_VERSION")"
fi

require_pin "$HERE/go.mod" "^[[:space:]]*(require )?github.com/prometheus/alertmanager v$AM_VERSION\$" \
  "go.mod is not pinned to alertmanager v$AM_VERSION"

new_stage "$DEST" .tmp.XXXXXX
fetch_modules "$HERE" "alertmanager v$AM_VERSION"
verify_modules "$HERE"
log "building amoracle"
(cd "$HERE" && go build -ldflags="-s -w" -o "$STAGE/amoracle" .)
smoke "$STAGE/amoracle" || die "the built amoracle fails its smoke test"

install_file "$STAGE/amoracle" "$BIN" "$STAMP" "$HERE"
finish "$BIN" "installed amoracle fails the check"
