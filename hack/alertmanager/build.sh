#!/usr/bin/env bash
# Builds a current Alertmanager (cmd/alertmanager of github.com/prometheus/alertmanager
# v$AM_VERSION) from its Go module with the machine's Go, for the e2e tests that run against
# two Alertmanager versions (Debian's 0.25 and this one).
#
# Usage:
#   hack/alertmanager/build.sh            ensure it is built; print the binary's path as the last stdout line
#   hack/alertmanager/build.sh --force    rebuild even if the cached binary looks good
#
# Progress goes to stderr; stdout carries only the binary path (last line).
# Cache: ${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}/alertmanager-v<ver>/alertmanager
# Go caches: shared with hack/controlplane/build.sh (<cache root>/controlplane/{gomodcache,gocache};
# override with REMEDIATOR_GOMODCACHE / REMEDIATOR_GOCACHE).
# Timings on the project's 2-core machine: cold (empty Go caches) 110 s (6 s of it downloading
# modules); with the control plane's Go caches (shared dependencies compiled) 74 s; rebuilt with
# every package in the Go cache (--force) 3 s; cached binary 0.02 s.
#
# The module zip is the source tree without the web UI's built assets: ui/web.go embeds
# `app/dist`, which upstream's Makefile builds with npm. The module is copied out of the module
# cache (which is read-only and shared) and a placeholder ui/app/dist/index.html is written, so
# `go build` has something to embed; the API, the only thing the tests use, is unaffected.
set -euo pipefail

# The steps every build here shares (cache root, log, lock, Go settings, install): hack/lib.sh.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TOOL=alertmanager

main() {

local AM_VERSION=0.35.0   # github.com/prometheus/alertmanager v$AM_VERSION
local MODULE=github.com/prometheus/alertmanager

CACHE_ROOT=$(cache_root)
DEST=$CACHE_ROOT/alertmanager-v$AM_VERSION
BIN=$DEST/alertmanager

parse_mode 2,20 "--force" "$@"

# The binary runs and reports the pinned version (set below through -ldflags).
cache_ok() {
  local out
  [[ -x $BIN ]] || return 1
  out=$("$BIN" --version 2>&1) || return 1
  [[ $out == *"alertmanager, version $AM_VERSION "* ]]
}

claim_build "$BIN" "$CACHE_ROOT/.alertmanager-v$AM_VERSION.lock"

shared_go_env "$CACHE_ROOT"
log_go_env

new_stage "$DEST" .tmp.XXXXXX

# `go mod download` checks the zip against the checksum database (GOSUMDB) before unpacking.
log "downloading $MODULE v$AM_VERSION"
local src
src=$(cd "$STAGE" && go mod download -json "$MODULE@v$AM_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $src/go.mod && -f $src/go.sum ]] || die "$MODULE v$AM_VERSION not found in the module cache"

log "copying the module and writing a placeholder ui/app/dist/index.html"
cp -R "$src" "$STAGE/src"
chmod -R u+w "$STAGE/src"
mkdir -p "$STAGE/src/ui/app/dist"
printf '<!doctype html><title>Alertmanager</title><p>Built by alert-remediator hack/alertmanager/build.sh without the web UI; the API is complete.</p>\n' \
  >"$STAGE/src/ui/app/dist/index.html"

# The module's own go.mod and go.sum pin every dependency; -mod=readonly refuses to change them.
log "downloading its dependencies"
(cd "$STAGE/src" && go mod download)
local V=github.com/prometheus/common/version
local LDFLAGS="-s -w -X $V.Version=$AM_VERSION -X $V.Revision=v$AM_VERSION -X $V.Branch=module"
LDFLAGS+=" -X $V.BuildUser=alert-remediator -X $V.BuildDate=module-v$AM_VERSION"
log "building cmd/alertmanager (cold: about 2 minutes on 2 cores)"
(cd "$STAGE/src" && go build -ldflags="$LDFLAGS" -o "$STAGE/alertmanager" ./cmd/alertmanager)

install_file "$STAGE/alertmanager" "$BIN"
finish "$BIN" "installed alertmanager fails the version check"
}

main "$@"
