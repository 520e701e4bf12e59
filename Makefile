# Every entry point of the project. `make` alone lists the targets.
# Tools come from hack/setup.sh (pinned in hack/versions.env) into .tools/ and .venv/.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)
export HELM_CACHE_HOME := $(CURDIR)/.tools/helm/cache
export HELM_CONFIG_HOME := $(CURDIR)/.tools/helm/config
export HELM_DATA_HOME := $(CURDIR)/.tools/helm/data
export HELM_PLUGINS := $(CURDIR)/.tools/helm/plugins

CHART := helm-chart/kata-deploy
PY_SRC := dispatcher/src node-installer/src
PY_ALL := dispatcher node-installer tests hack
NODES ?= 20

.PHONY: help
help: ## Show this list
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk -F':.*## ' '{printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

# What `make demo` uses (no helm 3, ct or containerd 1.6): a cold demo builds only these.
DEMO_TOOLS := apt-packages registry python helm4 etcd kubernetes kube-node kwok containerd2 \
  containerd2-node nfd-chart

.PHONY: setup
setup: ## Install every pinned tool (built once, cached in ~/.cache/kata-deploy)
	bash hack/setup.sh

.PHONY: setup-demo
setup-demo: ## Install only the tools `make demo` needs
	bash hack/setup.sh $(DEMO_TOOLS)

.PHONY: test
test: setup ## Run every gate: lint, unit tests, chart tests, docs drift, image checks, e2e
	rm -rf tests/results/evidence
	$(MAKE) --no-print-directory lint test-dispatcher test-node-installer test-chart test-contracts verify-docs test-faults test-images e2e
	python3 -m tests.evidence check
	@echo "make test: every gate passed"

.PHONY: lint
lint: ruff mypy helm-lint ct-lint hadolint shellcheck ## All linters

.PHONY: ruff
ruff: ## Lint and format-check the Python code
	ruff check $(PY_ALL)
	ruff format --check $(PY_ALL)

.PHONY: mypy
mypy: ## Type-check both programs, the test harness and the docs generator strictly
	cd dispatcher && mypy --strict src/kata_dispatcher
	cd node-installer && mypy --strict src/kata_installer
	mypy --strict --explicit-package-bases tests hack/chart-docs.py

.PHONY: test-dispatcher
test-dispatcher: ## Unit tests of the dispatcher
	cd dispatcher && pytest -q

.PHONY: test-node-installer
test-node-installer: ## Unit and lifecycle tests of the node installer (real containerd)
	cd node-installer && pytest -q

.PHONY: helm-lint
helm-lint: ## helm lint --strict with the defaults and every ci/*-values.yaml, Helm 4 and 3
	bash hack/helm-lint.sh

.PHONY: test-chart
test-chart: ## helm-unittest suites of the chart
	helm unittest --strict -f 'tests/**/*_test.yaml' $(CHART)

.PHONY: ct-lint
ct-lint: ## chart-testing lint (ct.yaml)
	ct lint --config ct.yaml

.PHONY: docs
docs: ## Regenerate the chart's values.schema.json and README values table
	python3 hack/chart-docs.py --write

.PHONY: verify-docs
verify-docs: ## Fail if the generated chart docs drifted from values.yaml or the README's table points nowhere
	python3 hack/chart-docs.py --check
	pytest -q tests/docs

.PHONY: hadolint
hadolint: ## Lint the Dockerfiles (and the local stand-in bases of images/bases)
	hadolint images/dispatcher/Dockerfile images/node-installer/Dockerfile images/bases/*/Dockerfile

.PHONY: shellcheck
shellcheck: ## Lint every shell script
	git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck -x

.PHONY: test-contracts
test-contracts: ## Check what the chart renders against the programs' own parsers
	pytest -q tests/contracts

.PHONY: test-faults
test-faults: ## Unit tests of the fault-injecting proxy that e2e puts in front of the apiserver
	pytest -q tests/faults

.PHONY: test-images
test-images: ## Check the Dockerfiles, run each entrypoint from a clean venv, build and push both with buildah
	pytest -q tests/images

.PHONY: e2e
e2e: ## End-to-end scenarios against a local control plane with kwok nodes
	pytest -q tests/e2e

.PHONY: cluster-up
cluster-up: ## Start a local cluster (real control plane, NODES kwok nodes)
	python3 -m tests.cluster up --nodes $(NODES)

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its state
	python3 -m tests.cluster down

.PHONY: demo
demo: setup-demo ## The main job: cluster (kwok, runner and a real node) up, images, install, upgrade, uninstall
	python3 -m tests.cluster demo --nodes $(NODES)

.PHONY: bench
bench: setup ## Benchmarks; each prints a table and keeps its results under tests/bench/results
	python3 -m tests.bench

.PHONY: images
images: ## Build both images with buildah (local stand-in bases, synthetic payload), tagged :dev
	@echo "make images: no outside registry or GitHub here, so the bases are local stand-ins (hack/base-images.sh)"
	@echo "make images: and the installer carries the synthetic payload; for a real image see images/README.md"
	bash hack/build-images.sh --bases local --payload synthetic --tag dev

.PHONY: clean
clean: ## Remove .tools and .venv from the checkout (the build cache stays)
	rm -rf .tools .venv
