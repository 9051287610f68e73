# roomstore's commands. `make test` installs every tool the tests need into
# .bin/ (pinned versions, built with `go install`), then runs all tests.

GO        ?= go
BIN       := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

VERSITYGW   := github.com/versity/versitygw/cmd/versitygw@v1.8.0
FAKEGCS     := github.com/fsouza/fake-gcs-server@v1.56.1
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
NATSSERVER  := github.com/nats-io/nats-server/v2@v2.15.2

# A stamp per pinned version, so that changing a version reinstalls it.
stamp = $(BIN)/.$(subst /,_,$(1))

FUZZTIME  ?= 60s

# Under CI=true every package runs again (-count=1): a pass from the test
# cache must not stand in for a run. A developer's repeated `make test`
# keeps the cache.
GOTESTFLAGS ?= $(if $(filter true,$(CI)),-count=1)

# The MeshAgent TypeScript client's tests of `roomstore serve`
# (cmd/roomstore/testdata/meshagent): node_modules comes from the committed
# package-lock.json with `npm ci`, again only when the lock file changes.
NODE_TEST         := cmd/roomstore/testdata/meshagent
NODE_STAMP        := $(NODE_TEST)/node_modules/.roomstore-npm-ci
NODE_TEST_TIMEOUT ?= 180000
need_node = command -v node >/dev/null && command -v npm >/dev/null || { echo "make test-node needs Node.js (20 or later) and npm on PATH"; exit 1; }

.PHONY: demo test test-node lint fuzz tools bench clean FORCE

# The file browser (package roomui): roomui/web holds its sources, its
# build (esbuild, pinned with tus-js-client and playwright-core by the
# committed package-lock.json) and its browser test; roomui/assets holds
# the bundle the package embeds, committed, so that `go install` needs no
# npm. `make ui` rebuilds it; `make test-ui` fails when it is stale, then
# drives Debian's chromium against roomstore serve.
UI_WEB          := roomui/web
UI_STAMP        := $(UI_WEB)/node_modules/.roomstore-npm-ci
UI_TEST_TIMEOUT ?= 300000
UI_ARTIFACTS    := $(CURDIR)/$(UI_WEB)/test-artifacts
CHROMIUM        ?= /usr/bin/chromium

.PHONY: ui test-ui

demo:
	$(GO) run ./cmd/demo

test: tools
	@echo "== go: go test -race $(GOTESTFLAGS) ./..."
	GOTRACEBACK=all $(GO) test -race -timeout 15m $(GOTESTFLAGS) ./...
	@$(MAKE) --no-print-directory test-node
	@$(MAKE) --no-print-directory test-ui

# Runs roomstore serve (built here) as a subprocess and drives it with
# @meshagent/meshagent 0.39.9 (and tus-js-client 4.3.1), the README's client snippet included
# (readme.test.mjs takes it from README.md); every wait in the tests has
# its own deadline, NODE_TEST_TIMEOUT (ms) bounds each test.
test-node: $(BIN)/roomstore $(NODE_STAMP) $(call stamp,$(NATSSERVER))
	@echo "== node: MeshAgent client tests ($(NODE_TEST), node $$(node --version))"
	cd $(NODE_TEST) && ROOMSTORE_BIN=$(BIN)/roomstore NATS_SERVER_BIN=$(BIN)/nats-server node --test --test-timeout=$(NODE_TEST_TIMEOUT) roomstore.test.mjs generations.test.mjs history.test.mjs readme.test.mjs tus.test.mjs
	@echo "== node: done"

# Always rebuilt; the Go build cache makes that cheap.
$(BIN)/roomstore: FORCE
	@mkdir -p $(BIN)
	@echo "== go build -o $@ ./cmd/roomstore"
	$(GO) build -o $@ ./cmd/roomstore

$(NODE_STAMP): $(NODE_TEST)/package-lock.json $(NODE_TEST)/package.json
	@$(need_node)
	@echo "== node: npm ci in $(NODE_TEST)"
	cd $(NODE_TEST) && npm ci --no-audit --no-fund
	@touch $@

FORCE:

ui: $(UI_STAMP)
	@echo "== ui: esbuild $(UI_WEB)/src into roomui/assets"
	cd $(UI_WEB) && node build.mjs

# Rebuilds the bundle into a temporary folder and compares it byte for
# byte with the committed one, then runs the browser test (every wait in
# it has its own deadline; UI_TEST_TIMEOUT (ms) bounds each test).
test-ui: $(BIN)/roomstore $(UI_STAMP) $(BIN)/.chromium
	@echo "== ui: the committed bundle (roomui/assets) is what $(UI_WEB)/src builds"
	@tmp=$$(mktemp -d) && (cd $(UI_WEB) && node build.mjs $$tmp) && \
	for f in app.js app.css icon.svg; do \
		cmp -s $$tmp/$$f roomui/assets/$$f || { echo "roomui/assets/$$f is stale: run make ui and commit it"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp
	@echo "== ui: browser tests ($(UI_WEB)/test, $$($(CHROMIUM) --version 2>/dev/null))"
	cd $(UI_WEB) && ROOMSTORE_BIN=$(BIN)/roomstore CHROMIUM_BIN=$(CHROMIUM) UI_ARTIFACTS=$(UI_ARTIFACTS) node --test --test-timeout=$(UI_TEST_TIMEOUT) test/grants.test.mjs test/browser.test.mjs
	@echo "== ui: done; screenshots in $(UI_ARTIFACTS)"

$(UI_STAMP): $(UI_WEB)/package-lock.json $(UI_WEB)/package.json
	@$(need_node)
	@echo "== ui: npm ci in $(UI_WEB)"
	cd $(UI_WEB) && npm ci --no-audit --no-fund
	@touch $@

# Debian's chromium, installed when missing (a fresh CI machine).
$(BIN)/.chromium:
	@mkdir -p $(BIN)
	@if [ ! -x $(CHROMIUM) ]; then \
		echo "== ui: apt-get install -y chromium"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium; \
	fi
	@$(CHROMIUM) --version
	@touch $@

lint: $(call stamp,$(STATICCHECK))
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	cd bench && $(GO) vet ./...

# Each fuzz target for FUZZTIME; `make test` already runs their committed
# corpora (testdata/fuzz) as ordinary tests.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzClean$$' -fuzztime $(FUZZTIME) ./roompath/
	$(GO) test -run '^$$' -fuzz '^FuzzSignedURL$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzBus$$' -fuzztime $(FUZZTIME) ./events/

# The benchmark suite (bench/, a module of its own) runs roomstore and its
# baselines side by side in the same process, BENCH_ROUNDS rounds of the
# ratio cases, and writes BENCHMARKS.md: about 20 minutes on 2 cores.
# BENCH_CLONE_DIR, if set, is a folder on a file system that clones (XFS,
# btrfs), where the append case runs again to show both of its costs.
BENCH_ROUNDS    ?= 5
BENCH_CLONE_DIR ?=
# BENCH_BASELINE, a git revision, adds section 12: the small-file cycle of
# that revision's engine against this tree's, interleaved round by round.
# The default is the engine before its instrumentation.
BENCH_BASELINE  ?= f52b032

bench: tools
	cd bench && $(GO) run ./cmd/benchreport -rounds $(BENCH_ROUNDS) $(if $(BENCH_CLONE_DIR),-clone-dir $(abspath $(BENCH_CLONE_DIR))) $(if $(BENCH_BASELINE),-baseline $(BENCH_BASELINE)) -out $(CURDIR)/BENCHMARKS.md -command "make bench"

tools: $(call stamp,$(VERSITYGW)) $(call stamp,$(FAKEGCS)) $(call stamp,$(NATSSERVER))

$(BIN)/.%:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install $(subst _,/,$*)
	@touch $@

clean:
	rm -rf $(BIN)
