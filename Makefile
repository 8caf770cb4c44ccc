# Tandem: the two commands a newcomer runs are `make demo` and `make test`.
# Both install what they need (Debian packages via scripts/deps.sh) and must
# run as root, because the lab lives in network namespaces.

GO        ?= go
VERSION   ?= 0.1.0-dev
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN       := bin/tandem
LABTOOLS  := bin/labtools
AGENT     := bin/tandem-agent

.PHONY: all build test unit e2e demo bench lint deps deb fuzz clean chaos soak

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tandem
	CGO_ENABLED=0 $(GO) build -trimpath -o $(LABTOOLS) ./scripts/labtools
	CGO_ENABLED=0 $(GO) build -trimpath -o $(AGENT) ./scripts/tandem-agent

deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/deps.sh; else echo "make: not root: skipping package installs (root-only tests will skip)"; fi

# The whole suite: vet, unit tests with the race detector, and (as root)
# the namespace and end-to-end tests, which skip with a message otherwise.
# The namespace end-to-end tests run after the others, not beside them:
# their pairs keep 50 ms heartbeats, and a machine saturated by the other
# packages' tests delays veth traffic (softirq work falls to ksoftirqd)
# enough to fail a peer over.
test: deps lint
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -race -count=1 -timeout 20m ./cmd/tandem/e2e/
	$(MAKE) fuzz FUZZTIME=5s

# A short run of every fuzz target (the corpora live in each package's
# testdata/fuzz/); scripts/fuzz.sh prints the executions per target, and
# `scripts/fuzz.sh --save` adds what a longer run found to the corpora.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

unit:
	$(GO) test -race -count=1 -short ./...

e2e: deps
	$(GO) test -count=1 -v -timeout 20m ./cmd/tandem/e2e/

demo: deps build
	scripts/demo.sh

bench: deps build
	scripts/bench-failover.sh
	scripts/bench-pair.sh

# The chaos suite (scripts/chaos.sh): faults under sticky client load, a
# table of outages and invariants; CHAOS_SEED reproduces a run.
chaos: deps
	scripts/chaos.sh

# An hour of steady, moderate load on a pair in lab 'soak' (not part of
# `make test`): RSS, heap, goroutines, fds and transitions of both nodes in
# a CSV, a summary, and exit 0 only when nothing failed over or failed.
# SOAK_DURATION [1h], SOAK_SAMPLE [30s], SOAK_OUT=DIR [a temp dir]. The
# script builds its own binaries into DIR (bin/ may be rebuilt meanwhile).
soak: deps
	scripts/soak.sh $(if $(SOAK_OUT),-o $(SOAK_OUT))

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

# A Debian package in dist/: binary, systemd unit, examples, completions,
# man pages.
deb:
	scripts/package-deb.sh $(VERSION)

clean:
	rm -rf bin dist
