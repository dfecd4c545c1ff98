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

# The steps every build here shares (cache root, log, lock, Go settings, install): hack/lib.sh.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TOOL=kubectl
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=$(cache_root)
DEST=$CACHE_ROOT/kubectl-v$KUBECTL_VERSION
BIN=$DEST/kubectl
STAMP=$DEST/.inputs.sha256
K8S_VERSION=1.${KUBECTL_VERSION#0.}

parse_mode 2,19 "--force --update" "$@"

cache_ok() {
  stamp_ok "$BIN" "$STAMP" "$HERE" || return 1
  local out
  out=$("$BIN" version --client 2>&1) || return 1
  [[ $out == *"Client Version: v$K8S_VERSION"* ]]
}

claim_build --announce "$BIN" "$CACHE_ROOT/.kubectl-v$KUBECTL_VERSION.lock"

shared_go_env "$CACHE_ROOT"
log_go_env

if [[ $MODE == update ]]; then
  log "update: go.mod pinned to k8s.io/kubectl v$KUBECTL_VERSION; go mod tidy"
  regenerate_module "$HERE" "$(
    echo "module alert-remediator/hack/kubectl"
    echo
    echo "go $(go_directive)"
    echo
    echo "require ("
    printf '\tk8s.io/client-go v%s\n\tk8s.io/component-base v%s\n\tk8s.io/kubectl v%s\n' \
      "$KUBECTL_VERSION" "$KUBECTL_VERSION" "$KUBECTL_VERSION"
    echo ")"
  )"
fi

require_pin "$HERE/go.mod" "^[[:space:]]*(require )?k8s.io/kubectl v$KUBECTL_VERSION\$" \
  "go.mod is not pinned to k8s.io/kubectl v$KUBECTL_VERSION"

new_stage "$DEST" .tmp.XXXXXX
fetch_modules "$HERE" "k8s.io/kubectl v$KUBECTL_VERSION"
verify_modules "$HERE"
log "building kubectl v$K8S_VERSION (cold: a few minutes on 2 cores, longer while another Go build runs)"
(cd "$HERE" && go build -ldflags="$(k8s_ldflags "$K8S_VERSION")" -o "$STAGE/kubectl" .)

out=$("$STAGE/kubectl" version --client 2>&1) || die "built kubectl does not run: $out"
[[ $out == *"Client Version: v$K8S_VERSION"* ]] || die "built kubectl reports '$out', want v$K8S_VERSION"

install_file "$STAGE/kubectl" "$BIN" "$STAMP" "$HERE"
finish "$BIN" "installed kubectl fails the version check"
