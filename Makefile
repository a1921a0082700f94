# Deployer: build, test, lint, package and run the suite.
# Everything a fresh machine needs is installed by `make setup` (run by the
# targets that need it): a Python venv with pinned moto server, cargo-lambda,
# cfn-lint and checkov, the npm ASL linter, and Debian's chromium and
# chromium-driver for the dashboard's browser test.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
TOOLS := .tools
CARGO_DENY := $(TOOLS)/bin/cargo-deny
S3S_FS := $(TOOLS)/bin/s3s-fs
ARCH ?= arm64
DIST := dist
FUNCTIONS := s3-trigger trigger-build ci-dispatch site-build site-builder gates
# gates is built on its own: cfn-guard turns on regex-syntax's Unicode tables
# (and memchr's std), and Cargo unifies features across the packages of one
# build, so building it with the others added about 0.5 MB to every function.
LEAN_FUNCTIONS := $(filter-out gates,$(FUNCTIONS))
ENV ?= dev
KEEP ?=

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lint-tools browser build test unit e2e lint fmt clippy cli-deps module-layers template-lint state-machine-models package deploy bench demo chaos clean

setup: $(STAMP_PY) $(STAMP_NPM) browser

# The dashboard's browser test drives headless Chromium through chromedriver,
# both from Debian's packages; installed once, when either is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver (the dashboard's browser test)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# cargo-deny's own release profile is fat LTO in one codegen unit, which
# makes its build from source most of `make lint`'s time on a fresh
# machine; it is a checker, so it is built without LTO, in 16 units.
lint-tools: $(CARGO_DENY)

$(CARGO_DENY):
	CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
	  cargo install --locked --quiet --root $(TOOLS) cargo-deny@0.20.2

# An S3-compatible server that is not CPU-bound, for the publish bench
# (0.14.1: the newest that builds on Rust 1.95).
$(S3S_FS):
	cargo install --locked --quiet --root $(TOOLS) s3s-fs@0.14.1 --features binary

$(STAMP_PY): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

# Debug binaries: the functions the local stack runs, the CLIs.
build:
	cargo build --bins

# Unit tests, then the end-to-end suite against moto (each test starts its own).
test: setup build template-lint
	cargo test --workspace

template-lint: setup
	$(VENV)/bin/cfn-lint cloudformation.template examples/sample-app/cloudformation.template
	node_modules/.bin/asl-validator --json-path state-machine/deployment.asl.json

# Every Task's Parameters/Arguments held against the AWS service models (botocore's, from
# the pinned awscli): member names, required members, literal nested structures.
state-machine-models: setup
	$(PY) -m unittest scripts/test_check_state_machine_models.py
	$(PY) scripts/check_state_machine_models.py state-machine/deployment.asl.json

fmt:
	cargo fmt --all -- --check

# Clippy's artifacts (metadata only) are never shared with a build's, so
# they get a directory of their own: `.ci/run` makes them while the tests
# run, and no clippy run waits on a test build's lock.
clippy:
	cargo clippy --workspace --all-targets --target-dir target/clippy -- -D warnings

# The operator CLI reads the records through builddao, sitedao and ledger,
# and links no Lambda function's crate: fails naming any crate under
# lambdas/ among its dependencies.
cli-deps:
	@tree="$$(cargo tree -p deployer --prefix none --edges normal)" || exit 1; \
	lambdas="$$(grep -F ' ($(CURDIR)/lambdas/' <<<"$$tree" | sort -u)"; \
	if [ -n "$$lambdas" ]; then \
	  echo "$$lambdas"; echo "deployer (crates/deployer-cli) must depend on no crate under lambdas/"; exit 1; fi

# No import circle between the top-level modules of the harness, of
# site-build and of the site's records (scripts/check_module_cycles.py).
module-layers: setup
	$(PY) -m unittest scripts/test_check_module_cycles.py
	$(PY) scripts/check_module_cycles.py tests/local-stack/src lambdas/site-build/src crates/sitedao/src

lint: setup fmt clippy cli-deps module-layers template-lint state-machine-models $(CARGO_DENY)
	$(VENV)/bin/checkov --quiet --compact --framework cloudformation -f cloudformation.template
	$(CARGO_DENY) check licenses bans sources

# Release zips for Lambda (cargo-lambda, cross-compiled with zig).
package: setup
	cargo lambda build --release --$(ARCH) $(addprefix --bin ,$(LEAN_FUNCTIONS)) --output-format zip
	cargo lambda build --release --$(ARCH) --bin gates --output-format zip
	mkdir -p $(DIST)
	for f in $(FUNCTIONS); do cp target/lambda/$$f/bootstrap.zip $(DIST)/$$f.zip; done
	cp state-machine/deployment.asl.json $(DIST)/
	cd $(DIST) && sha256sum *.zip deployment.asl.json > SHA256SUMS && cat SHA256SUMS

# Ship it: upload dist/ under deployer/$(VERSION)/ in the code bucket (created if
# missing) and create or update the stack $(ENV)-deployer; AWS_ENDPOINT_URL aims it
# at an emulator. Packages first only when dist/ is missing (`make package deploy`
# to rebuild). CFN_ROLE_ARN is required on the first deploy; PARAMS="Key=Value ..."
# sets other template parameters (unset ones keep their deployed values).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
DEPLOY_FLAGS = $(if $(CODE_BUCKET),--code-bucket $(CODE_BUCKET)) \
	$(if $(CFN_ROLE_ARN),--cfn-role-arn $(CFN_ROLE_ARN)) \
	$(if $(filter command line environment,$(origin ARCH)),--architecture $(ARCH)) \
	$(foreach p,$(PARAMS),--parameter '$(p)')

deploy: setup
	@test -d $(DIST) || $(MAKE) package
	$(PY) scripts/deploy.py --env $(ENV) --version "$(VERSION)" --dist $(DIST) $(strip $(DEPLOY_FLAGS))

# Figures, not pass/fail: cold start and RSS beside a hello-world baseline,
# zip sizes, upload-to-IN_PROGRESS latency; site-build's publisher beside
# `aws s3 sync`, the sample site built with a cold and a warm npm cache
# (docs/benchmarks.md). Builds release binaries first, the bench itself too:
# it runs the publisher in-process; then against s3s-fs behind 20 ms of
# latency per request, at 2,000 and 20,000 files. `make bench BENCH=site`
# (or functions, or s3s: only the s3s-fs part) runs one part.
bench: package build $(S3S_FS)
	cargo build --release $(addprefix --bin ,$(LEAN_FUNCTIONS)) --bin hello-lambda
	cargo build --release --bin gates
	cargo build --release -p deployer-bench
	@command -v git >/dev/null || { echo "make bench needs git (the sample site's repository)"; exit 1; }
	target/release/deployer-bench $(BENCH)

# The local demo: moto server, the pipeline, the sample app deployed.
# `make demo KEEP=1` leaves the stack running.
demo: setup build
	target/debug/deployer-local demo --env $(ENV) $(if $(KEEP),--keep,)

# N builds, N ECS events and N site deploys under randomised faults from a
# printed seed (SEED= replays one, N= sets how many); exits 1 if anything was
# lost, stuck, duplicated or out of order. About a minute at N=16 once built: not in `make test`.
SEED ?=
N ?= 10
chaos: setup build
	target/debug/deployer-local chaos --count $(N) $(if $(SEED),--seed $(SEED),)

clean:
	cargo clean
	rm -rf $(DIST) $(VENV) node_modules $(TOOLS)
