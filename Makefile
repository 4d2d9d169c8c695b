# gemproxy: build, test and benchmark entry points. `make test` is what CI runs.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)

.PHONY: build test test-deps weed fuzz bench screenshot

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gemproxy ./cmd/gemproxy

# test-deps installs what the end-to-end tests drive (Debian's ruby and
# ruby-bundler, prometheus, chromium for the status page, and nginx as the
# fleet tests' balancer) when it is missing and we are root; without them
# those tests skip, or fail under CI.
TEST_TOOLS := ruby:ruby bundle:ruby-bundler prometheus:prometheus chromium:chromium nginx:nginx
test-deps:
	@missing=""; for t in $(TEST_TOOLS); do \
		command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing and cannot be installed:$$missing (the end-to-end tests that need them will skip)"; fi; \
	fi

# weed builds the SeaweedFS server that the shared-store tests run on
# loopback, once per version (cached under ~/.cache/gemproxy; about 4.5
# minutes on 2 cores when cold), in a module of its own. If it cannot be
# built, those tests skip, or fail under CI.
weed:
	@GO=$(GO) ./internal/testweed/build-weed.sh >/dev/null || \
		echo "SeaweedFS could not be built: the S3 tests will skip (fail under CI)"

test: test-deps weed
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	# Heap bounds once more without -race, which makes sync.Pool drop buffers.
	$(GO) test -count=1 -run 'Heap|Alloc|Unverified|Oversized' ./internal/...
	# The Helm chart and the Grafana dashboard: a separate module, so that
	# Helm's and Kubernetes' dependencies stay out of gemproxy's own.
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...

# fuzz runs every fuzz target for FUZZTIME each: an execution count ("Nx"),
# not a duration, because Go 1.26's fuzz coordinator can fail a clean run
# with "context deadline exceeded" when a duration expires mid-execution
# (golang/go#75804, fixed in Go 1.27). FUZZTIME=30s still works locally.
FUZZTIME ?= 100000x
fuzz:
	@for pkg in ./internal/compactindex ./internal/cache ./internal/proxy ./internal/lockfile; do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg || exit 1; \
		done; \
	done

bench:
	./bench/run.sh

# screenshot renders the status page after some test traffic in headless
# Chromium and saves it at desktop and phone sizes as
# bench/tmp/status-desktop.png and bench/tmp/status-phone.png.
screenshot: test-deps
	$(GO) test -count=1 -run '^TestStatusPageInBrowser$$' ./internal/e2e -args -screenshot=$(CURDIR)/bench/tmp
