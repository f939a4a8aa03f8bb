# The two commands a newcomer needs:
#   make run    start 3 primaries + 3 replicas on 127.0.0.1:7000-7005 (Ctrl-C stops it)
#   make test   lint, type-check, check generated code, and run every test
# Both create .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit bench protos wheel-check k8s-tools k8s-image clean

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "slotcache needs Python 3.11 or later")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Client ports 7000-7005 (primaries 7000-7002, their replicas 7003-7005), bus ports
# 17000-17005, files in .cluster/ (see docs/clusterctl.md).
run: $(STAMP)
	$(BIN)/clusterctl up --foreground --primaries 3 --replicas 1 --base-port 7000 --dir .cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/gen-protos --check

# The cluster, failover and resharding suites run with TLS on every port and users on
# every node and connection (docs/security.md); everything else runs plaintext. Run them
# plaintext too with: .venv/bin/python -m pytest -q $(SECURE_SUITES)
SECURE_PARALLEL := tests/integration/cluster
SECURE_ALONE := tests/integration/ctl/test_resharding.py tests/faults/test_manual_failover.py
SECURE_SUITES := $(SECURE_PARALLEL) $(SECURE_ALONE)

SECURE := SLOTCACHE_TEST_TLS=1 SLOTCACHE_TEST_ACL=1

# Most tests wait (for servers to start, gossip, timeouts) more than they compute, so
# they run in two worker processes, a whole file per worker so that a module's shared
# servers are started once. The fault tests measure failover and pause times against
# bounds, and resharding holds client throughput during a move to a share of what it
# was before, so they run afterwards, one at a time, with nothing else on the machine.
PARALLEL := -n 2 --dist loadfile

test: lint
	$(BIN)/python -m pytest -q $(PARALLEL) -m "not faults" $(addprefix --ignore=,$(SECURE_SUITES))
	$(BIN)/python -m pytest -q tests/faults $(addprefix --ignore=,$(SECURE_SUITES))
	$(SECURE) $(BIN)/python -m pytest -q $(PARALLEL) $(SECURE_PARALLEL)
	$(SECURE) $(BIN)/python -m pytest -q $(SECURE_ALONE)

# The pure tests alone (no process, socket or server), in under 30 s.
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# A wheel built from the tree, installed without -e into a clean venv, serves.
wheel-check: $(STAMP)
	$(BIN)/python scripts/check-wheel

# checkov, for tests/integration/k8s, in its own venv: its pinned dependencies would
# otherwise replace the project's. The other manifest tools are dev extras. The venv
# lives outside the tree, once per machine (CI checks out a fresh tree each run, and
# resolving checkov's ~100 dependencies takes minutes); tests/support/k8s.py looks
# for it there (SLOTCACHE_TOOLS moves it).
SLOTCACHE_TOOLS ?= $(HOME)/.cache/slotcache-tools
# The stamp is written last, so an interrupted install is redone, not trusted.
CHECKOV := $(SLOTCACHE_TOOLS)/checkov/.installed
$(CHECKOV):
	rm -rf $(SLOTCACHE_TOOLS)/checkov
	$(PYTHON) -m venv $(SLOTCACHE_TOOLS)/checkov
	$(SLOTCACHE_TOOLS)/checkov/bin/pip install --quiet 'checkov>=3.2'
	@touch $@

k8s-tools: $(STAMP) $(CHECKOV)

# The image tests/integration/k8s runs (podman, on a base made from Debian packages
# once per machine); the test rebuilds it from cached layers in seconds.
k8s-image:
	$(PYTHON) scripts/build-image

bench: $(STAMP)
	$(BIN)/python scripts/bench

protos: $(STAMP)
	$(BIN)/python scripts/gen-protos

clean:
	@if [ -x $(BIN)/clusterctl ]; then $(BIN)/clusterctl down --dir .cluster; fi
	rm -rf $(VENV) .data .cluster .pytest_cache .mypy_cache .ruff_cache
