#!/usr/bin/env bash
# Install the real Prometheus and Alertmanager that the e2e tests drive, the headless
# Chromium that renders the approval page, and the Redis (Cluster, Sentinel) and PgBouncer the
# store and guard tests run behind, and a Debian PostgreSQL server (a server built with lz4 and JIT,
# beside the embedded one: test_audit_compression.py) (Debian packages), only when their binaries are missing. Idempotent: a second run installs nothing.
# Also curl and openssl, which the README's "Try an approval locally" uses and its test runs
# as written (test_readme_approval.py).
#
# The packages' maintainer scripts would start prometheus.service and prometheus-alertmanager
# .service (ports 9090/9093, state under /var/lib). The tests start their own processes on free
# loopback ports, so a policy-rc.d answering 101 ("action forbidden") keeps invoke-rc.d from
# starting anything during the install. A policy-rc.d the machine already had is moved aside
# for the install and put back afterwards; ours is removed.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }
have_alertmanager() { need prometheus-alertmanager || need alertmanager; }
# Debian puts pgbouncer in /usr/sbin, which a user's PATH may not hold (the tests look there).
have_pgbouncer() { need pgbouncer || [[ -x /usr/sbin/pgbouncer ]]; }
have_postgresql() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

missing=()
for tool in prometheus promtool amtool; do need "$tool" || missing+=("$tool"); done
have_alertmanager || missing+=("prometheus-alertmanager")
need chromium || missing+=("chromium")
need redis-server || missing+=("redis-server")
have_pgbouncer || missing+=("pgbouncer")
have_postgresql || missing+=("postgresql")
need curl || missing+=("curl")
need openssl || missing+=("openssl")

if ((${#missing[@]} == 0)); then
  echo "==> e2e: prometheus, promtool, alertmanager, amtool, chromium, redis-server, pgbouncer, postgresql, curl and openssl are installed; nothing to do"
  exit 0
fi

echo "==> e2e: missing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  if need sudo; then SUDO=(sudo); else
    echo "e2e: need root (or sudo) to apt-get install prometheus prometheus-alertmanager" >&2
    exit 1
  fi
else
  SUDO=()
fi

policy=/usr/sbin/policy-rc.d
backup="$policy.e2e-install-backup"
state=untouched  # untouched -> moved (the machine's is at $backup) -> written (ours is at $policy)
cleanup() {
  case $state in
    written | moved)
      if [[ -e $backup ]]; then
        echo "==> e2e: restoring the original $policy"
        "${SUDO[@]}" mv -f "$backup" "$policy"
      else
        echo "==> e2e: removing $policy"
        "${SUDO[@]}" rm -f "$policy"
      fi
      ;;
  esac
}
trap cleanup EXIT
if [[ -e $policy ]]; then
  echo "==> e2e: moving the existing $policy aside to $backup for the install"
  "${SUDO[@]}" mv -f "$policy" "$backup"
  state=moved
fi
echo "==> e2e: writing $policy (exit 101) so apt starts no services"
state=written
printf '#!/bin/sh\n# written by hack/e2e/install.sh: forbid service start-up during apt-get\nexit 101\n' \
  | "${SUDO[@]}" tee "$policy" >/dev/null
"${SUDO[@]}" chmod 0755 "$policy"

export DEBIAN_FRONTEND=noninteractive
# Always refresh: a stale list can name versions the archive no longer serves (a 404 mid-install).
echo "==> e2e: apt-get update"
"${SUDO[@]}" apt-get update -qq
packages=(prometheus prometheus-alertmanager chromium redis-server pgbouncer postgresql curl openssl)
echo "==> e2e: apt-get install -y --no-install-recommends ${packages[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"

# Without systemd (containers) nothing ran anyway; with it, make sure the packaged units are
# stopped if something started them regardless (e.g. a policy-rc.d that allowed it).
if need systemctl && [[ -d /run/systemd/system ]]; then
  for unit in prometheus prometheus-alertmanager redis-server pgbouncer; do
    if systemctl is-active --quiet "$unit" 2>/dev/null; then
      echo "==> e2e: stopping $unit.service (the tests run their own)"
      "${SUDO[@]}" systemctl stop "$unit" || true
    fi
  done
fi

for tool in prometheus promtool amtool; do
  need "$tool" || { echo "e2e: $tool still missing after install" >&2; exit 1; }
done
have_alertmanager || { echo "e2e: alertmanager still missing after install" >&2; exit 1; }
need chromium || { echo "e2e: chromium still missing after install" >&2; exit 1; }
need redis-server || { echo "e2e: redis-server still missing after install" >&2; exit 1; }
have_pgbouncer || { echo "e2e: pgbouncer still missing after install" >&2; exit 1; }
for tool in curl openssl; do
  need "$tool" || { echo "e2e: $tool still missing after install" >&2; exit 1; }
done
am=$(command -v prometheus-alertmanager || command -v alertmanager)
echo "==> e2e: $(prometheus --version 2>&1 | head -n1)"
echo "==> e2e: $("$am" --version 2>&1 | head -n1) ($am)"
echo "==> e2e: $(chromium --version 2>&1 | head -n1)"
echo "==> e2e: $(redis-server --version 2>&1 | head -n1)"
echo "==> e2e: $("$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" --version 2>&1 | head -n1)"
