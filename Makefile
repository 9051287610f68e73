# roomstore's commands. `make test` installs every tool the tests need into
# .bin/ (pinned versions, built with `go install`), then runs all tests.

GO        ?= go
BIN       := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

VERSITYGW   := github.com/versity/versitygw/cmd/versitygw@v1.8.0
FAKEGCS     := github.com/fsouza/fake-gcs-server@v1.56.1
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# A stamp per pinned version, so that changing a version reinstalls it.
stamp = $(BIN)/.$(subst /,_,$(1))

FUZZTIME  ?= 60s

.PHONY: demo test lint fuzz tools bench clean

demo:
	$(GO) run ./cmd/demo

test: tools
	GOTRACEBACK=all $(GO) test -race -timeout 15m ./...

lint: $(call stamp,$(STATICCHECK))
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	cd bench && $(GO) vet ./...

# Each fuzz target for FUZZTIME; `make test` already runs their committed
# corpora (testdata/fuzz) as ordinary tests.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzClean$$' -fuzztime $(FUZZTIME) ./backend/
	$(GO) test -run '^$$' -fuzz '^FuzzSignedURL$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzBus$$' -fuzztime $(FUZZTIME) ./events/

# The benchmark suite (bench/, a module of its own) runs roomstore and its
# baselines side by side in the same process, BENCH_ROUNDS rounds of the
# ratio cases, and writes BENCHMARKS.md: 6 to 10 minutes on 2 cores.
BENCH_ROUNDS ?= 5

bench: tools
	cd bench && $(GO) run ./cmd/benchreport -rounds $(BENCH_ROUNDS) -out $(CURDIR)/BENCHMARKS.md -command "make bench"

tools: $(call stamp,$(VERSITYGW)) $(call stamp,$(FAKEGCS))

$(BIN)/.%:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install $(subst _,/,$*)
	@touch $@

clean:
	rm -rf $(BIN)
