# sentinel's build. `make test` installs the tools it needs into ./bin (and
# Chromium onto the machine) the fastest way the machine allows; see
# .ci/tools. A fresh machine needs nothing but Go.

GO          ?= go
BIN         := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
# promtool: an installed or Debian-packaged one when it is at least
# PROMTOOL_MIN, else built from PROMTOOL_VERSION (a Go module version).
PROMTOOL    := $(BIN)/promtool
PROMTOOL_MIN := 2.42.0
PROMTOOL_VERSION := v0.316.0
# Go's test cache skips packages whose code and test inputs did not change;
# TESTFLAGS=-count=1 runs everything again.
TESTFLAGS   ?=
BENCHTIME   ?= 1x
BENCH       ?= .
# FUZZTIME is per fuzz target. FUZZMINIMIZETIME bounds the minimizing of
# each new input that widens coverage, a minute by Go's default, on which
# targets whose iterations make HTTP round trips would spend their FUZZTIME.
FUZZTIME    ?= 10s
FUZZMINIMIZETIME ?= 5s

.PHONY: build test tools chromium vet staticcheck alerts bench fuzz demo clean

# -buildvcs=auto, Go's default, spelled out so that a GOFLAGS=-buildvcs=false
# in the environment cannot drop the commit from -version and
# sentinel_build_info.
build:
	$(GO) build -buildvcs=auto -o $(BIN)/sentinel ./cmd/sentinel

# The one test command: README, CI (.ci/run) and developers run exactly this.
test: tools vet staticcheck alerts
	$(GO) test -race $(TESTFLAGS) ./...
	$(GO) run ./cmd/sentinel -check-policies -policies policies
	$(GO) run ./cmd/sentinel -test-policies policies/tests/*.yaml

vet:
	@unformatted="$$(gofmt -l cmd internal)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# What the tests need beyond Go; cheap when everything is there.
tools: $(STATICCHECK) $(PROMTOOL) chromium

# For browser tests: installed as root through apt-get, else they skip.
chromium:
	@.ci/tools chromium

# The alerting rules for sentinel itself, checked and unit-tested.
alerts: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/alerts.yml
	cd deploy && $(PROMTOOL) test rules alerts_test.yml

$(PROMTOOL):
	@GO=$(GO) PROMTOOL_MIN=$(PROMTOOL_MIN) PROMTOOL_VERSION=$(PROMTOOL_VERSION) .ci/tools promtool $@

# Benchmarks hold the speed and memory targets; see README "Performance".
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

# Every Fuzz target in turn, each for FUZZTIME (see .ci/fuzz); their seed
# corpora already run in `make test`.
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) .ci/fuzz

# Built, then run: `go run` would turn the demo's clean exit on Ctrl-C into
# an error.
demo: build
	@$(BIN)/sentinel -demo

clean:
	rm -rf $(BIN)
