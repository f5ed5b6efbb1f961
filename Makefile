# mclease: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else they need (the venv, test servers, Kubernetes binaries) is installed from here.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PLUGINS := $(sort $(wildcard plugins/mclease_*))
LINTED := mclease_core devtools tests bench demo $(PLUGINS)

.PHONY: dev demo demo-elect test test-fast lint bench clean kube-assets test-servers go-candidate test-e2e-kind helm

## dev: create .venv with the core, every plugin and the dev harness (devtools/) installed
## editable, plus the test tools
dev: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-dev.txt devtools/pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
		-e '.[test,controller]' $(foreach plugin,$(PLUGINS),-e ./$(plugin)) -e ./devtools
	touch $@

## demo: two real local clusters, a controller and a candidate in each, one SQLite store;
## the leader is killed and the takeover shown as a timeline
demo: dev kube-assets
	$(PY) demo/multicluster_demo.py

## demo-elect: two `mclease elect` processes compete for one lease on SQLite (no Kubernetes)
demo-elect: dev
	$(PY) demo/elect_demo.py

## lint: ruff (checks and formatting) on everything, mypy --strict on the packages
lint: dev
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy --strict mclease_core devtools/mclease_dev $(foreach plugin,$(PLUGINS),$(plugin)/$(notdir $(plugin))) bench demo

## test: lint, then every test (installs or builds the test servers first)
test: dev lint test-servers kube-assets go-candidate helm
	$(PY) -m pytest

## kube-assets: kube-apiserver, etcd and kubectl for tests/kube (KUBEBUILDER_ASSETS if set,
## else built from the Go module proxy into ~/.cache/mclease/kube-assets; ~14 min cold, instant warm)
kube-assets:
	hack/kube-assets.sh >/dev/null

## go-candidate: the Go application pod of the e2e tests (client-go's elector with a
## MultiClusterLease lock, tests/e2e/gocandidate), built into ~/.cache/mclease (~2.5 min cold)
go-candidate:
	hack/go-candidate.sh >/dev/null

## helm: the helm binary of the chart tests (tests/manifests/test_helm.py), built from the Go
## module proxy into ~/.cache/mclease/helm/<version> (~6 min cold, instant warm)
helm:
	hack/helm.sh >/dev/null

## test-servers: redis-server, etcd (apt) and fake-gcs-server (Go module proxy, ~4 min cold)
test-servers:
	hack/test-servers.sh

## test-e2e-kind: the e2e tests on a kind cluster (needs Docker and kind; not available on CI here)
test-e2e-kind:
	hack/e2e-kind.sh

## test-min-deps: the core and plugins installed from wheels with every dependency at the lowest
## version the pyproject files allow, then the fast tests and the kubernetes-client tests (~3.5 min)
.PHONY: test-min-deps
test-min-deps: test-servers kube-assets
	PYTHON=$(PYTHON) hack/min-deps.sh

## test-fast: the tests that need no real processes beyond Python
test-fast: dev
	$(PY) -m pytest -m "not slow"

## simulate: the deterministic simulation of the whole protocol (devtools/mclease_dev/sim): SEEDS
## seeds on JOBS cores, a summary table, figures in build/reliability/simulate.json; exits 1 on
## any violation and prints the command that replays it
SEEDS ?= 1000
JOBS ?= 2
.PHONY: simulate
simulate: dev
	$(PY) -m mclease_dev.sim --seeds $(SEEDS) --jobs $(JOBS) --json build/reliability/simulate.json

## bench: benchmarks; prints tables and writes bench/results/*.json
bench: dev test-servers kube-assets
	$(PY) bench/storage.py
	$(PY) bench/backends.py
	$(PY) bench/controller.py --stores sqlite,redis,etcd --failover-stores sqlite,redis,etcd,gcs
	$(PY) bench/goals.py

clean:
	rm -rf $(VENV) bench/results .mypy_cache .ruff_cache .hypothesis

## chaos: randomized faults on real processes (two clusters, controller replicas, candidates, a
## store per round: kill -9, SIGSTOP, proxy faults, store restarts); ROUNDS rounds (default 5),
## a summary table, exit 1 on any violation (python -m mclease_dev.chaos --help for the options)
.PHONY: chaos
ROUNDS ?= 5
chaos: dev test-servers kube-assets
	$(PY) -m mclease_dev.chaos --rounds $(ROUNDS)
