# shellcheck shell=bash
# What the hack/*/build.sh scripts share: each builds a test tool from Go modules with the
# machine's Go and caches it outside the repo, keyed by version. Sourced, never run; it defines
# functions only.
#
# The contract every build script keeps (the Makefile's `tail -n1` and tests/support/tools.py
# rely on it): progress and errors go to stderr, stdout carries only the built path as its last
# line, a failure exits non-zero with "build.sh: <what is wrong>" on stderr (2 for a bad argument).
#
# A script sets TOOL (its log tag) and defines cache_ok (true when the cached build is good: it
# exists, runs, and reports the pinned version) before calling the functions below.

# cache_root: print the cache root, $REMEDIATOR_CACHE_DIR or else
# ${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator. Each tool's dir below it names its version.
cache_root() { printf '%s\n' "${REMEDIATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/alert-remediator}"; }

# log MESSAGE...: "[$TOOL HH:MM:SS] MESSAGE" on stderr.
log() { printf '[%s %s] %s\n' "$TOOL" "$(date +%H:%M:%S)" "$*" >&2; }

# die MESSAGE...: "build.sh: MESSAGE" on stderr, then exit 1.
die() {
  echo "build.sh: $*" >&2
  exit 1
}

# parse_mode HELP_LINES ACCEPTED ARG...: set MODE from the script's arguments: build (none),
# force (--force) or update (--update), each only when named in ACCEPTED ("--force --update").
# -h/--help prints the script's lines HELP_LINES (a sed range such as 2,18) and exits 0; any
# other argument exits 2.
# shellcheck disable=SC2034  # MODE is for the calling script
parse_mode() {
  local help=$1 accepted=$2 arg
  shift 2
  MODE=build
  for arg in "$@"; do
    case $arg in
      -h | --help)
        sed -n "${help}p" "$0"
        exit 0
        ;;
      --force | --update)
        if [[ " $accepted " == *" $arg "* ]]; then
          MODE=${arg#--}
          continue
        fi
        ;;
    esac
    echo "build.sh: unknown argument: $arg" >&2
    exit 2
  done
}

# serve_cached PATH [HOW]: when cache_ok passes, log "cached (HOW): PATH", print PATH on stdout
# and exit 0; else return 0 so the build goes on.
serve_cached() {
  cache_ok || return 0
  log "cached${2:+ ($2)}: $1"
  echo "$1"
  exit 0
}

# require_go: exit 1 unless go is on PATH.
require_go() { command -v go >/dev/null || die "go not found on PATH"; }

# build_lock [--announce] LOCKFILE: one build at a time per cache root. Opens LOCKFILE (making
# its dir) on fd 9 for the rest of the script and waits for an exclusive flock on it, logging
# the wait with --announce. Returns 1 when flock is not installed (nothing to wait for), so
# callers look at the cache again only after a wait: a second caller finds the first one's build.
# Called as a condition (where set -e is off), so a failure to open the lock exits explicitly.
build_lock() {
  local announce=
  if [[ $1 == --announce ]]; then
    announce=1
    shift
  fi
  mkdir -p "$(dirname "$1")" || exit
  exec 9>"$1" || exit
  command -v flock >/dev/null || return 1
  [[ -z $announce ]] || log "waiting for build lock $1"
  flock 9 || exit
}

# claim_build [--announce] PATH LOCKFILE: reuse the cached PATH or win the right to build it.
# Plain runs (MODE build) serve_cached PATH; otherwise go must be there, build_lock LOCKFILE is
# taken (--announce as there), and a plain run looks at the cache again after the wait: another
# process may have built PATH meanwhile.
claim_build() {
  local lock_flags=()
  if [[ $1 == --announce ]]; then
    lock_flags=(--announce)
    shift
  fi
  if [[ $MODE == build ]]; then serve_cached "$1"; fi
  require_go
  if build_lock "${lock_flags[@]}" "$2" && [[ $MODE == build ]]; then
    serve_cached "$1" "built by another process"
  fi
}

# go_env GOMODCACHE GOCACHE: export the settings every build here runs Go with: those caches,
# the machine's toolchain only (no toolchain download), no workspace, static binaries, no local
# paths or VCS data in the binary, and go.mod/go.sum read-only (a build never changes the pins).
go_env() {
  export GOMODCACHE=$1 GOCACHE=$2
  export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
  export GOFLAGS="-trimpath -buildvcs=false -modcacherw -mod=readonly"
}

# shared_go_env CACHE_ROOT: go_env with the control plane's Go caches under CACHE_ROOT
# (controlplane/{gomodcache,gocache}), so the modules the builds share are downloaded and
# compiled once; REMEDIATOR_GOMODCACHE / REMEDIATOR_GOCACHE name other caches.
shared_go_env() {
  go_env "${REMEDIATOR_GOMODCACHE:-$1/controlplane/gomodcache}" \
    "${REMEDIATOR_GOCACHE:-$1/controlplane/gocache}"
}

# log_go_env: log the Go in use and its caches.
log_go_env() { log "go: $(go version) GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE"; }

# require_pin GOMOD ERE WHAT: exit 1 with "WHAT; run build.sh --update" unless a line of GOMOD
# matches ERE. The committed go.mod must match the version the script pins, else the cache
# dir's name (keyed by that version) would lie.
require_pin() { grep -qE "$2" "$1" || die "$3; run build.sh --update"; }

# go_directive: the `go` line's version for a generated go.mod: the machine's Go as X.Y.0.
go_directive() {
  local v
  v=$(go env GOVERSION)
  v=${v#go}
  echo "${v%.*}.0"
}

# regenerate_module DIR TEXT: replace DIR/go.mod with TEXT (plus a newline), drop go.sum, and
# let `go mod tidy` resolve and record every dependency (needs the module proxy).
regenerate_module() {
  printf '%s\n' "$2" >"$1/go.mod.tmp"
  mv "$1/go.mod.tmp" "$1/go.mod"
  rm -f "$1/go.sum"
  (cd "$1" && GOFLAGS="-modcacherw -mod=mod" go mod tidy)
}

# fetch_modules DIR WHAT: log, then download what DIR's go.mod needs (checked against go.sum).
fetch_modules() {
  log "downloading modules for $2"
  (cd "$1" && go mod download)
}

# verify_modules DIR: the module cache's copies of DIR's dependencies still match go.sum.
verify_modules() {
  log "verifying module checksums"
  (cd "$1" && go mod verify >/dev/null)
}

# k8s_ldflags VERSION: `go build -ldflags` for a Kubernetes binary of VERSION (1.x.y): no
# symbol tables, and the version variables upstream's build (hack/lib/version.sh) sets, so that
# `--version` and `kubectl version` report vVERSION.
k8s_ldflags() {
  local minor=${1#1.} pkg flags="-s -w"
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=v$1 -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

# inputs_hash DIR: sha256 of DIR's go.mod, go.sum and main.go, what its binary is built from.
inputs_hash() { cat "$1/go.mod" "$1/go.sum" "$1/main.go" | sha256sum | cut -d' ' -f1; }

# stamp_ok BIN STAMP DIR: BIN is executable and STAMP holds DIR's inputs_hash (a changed
# go.mod, go.sum or main.go means rebuild).
stamp_ok() {
  [[ -x $1 && -f $2 ]] || return 1
  [[ $(cat "$2") == "$(inputs_hash "$3")" ]]
}

# new_stage PARENT TEMPLATE: make PARENT and a private dir PARENT/TEMPLATE (mktemp -d) in it as
# STAGE, removed when the script exits; start the build clock (BUILD_START). The stage shares
# the cache's filesystem, so installing from it is a rename.
new_stage() {
  mkdir -p "$1"
  STAGE=$(mktemp -d "$1/$2")
  trap 'rm -rf "$STAGE"' EXIT
  BUILD_START=$SECONDS
}

# install_file STAGED BIN [STAMP DIR]: publish STAGED as BIN by a rename within one filesystem
# (a reader sees the old binary or the new one, never part of one). With STAMP, DIR's
# inputs_hash is written there after the binary, so a stamp never vouches for an older binary.
install_file() {
  log "installing into $(dirname "$2")"
  if (($# > 2)); then rm -f "$3"; fi
  mv -f "$1" "$2"
  if (($# > 2)); then
    inputs_hash "$4" >"$STAGE/stamp"
    mv -f "$STAGE/stamp" "$3"
  fi
}

# finish PATH FAILURE: check the installed build with cache_ok (exit 1 with FAILURE if it
# fails), log the build's time and size, and print PATH as the last line on stdout.
finish() {
  cache_ok || die "$2"
  log "done in $((SECONDS - BUILD_START))s: $(du -sh "$1" | cut -f1)"
  echo "$1"
}
