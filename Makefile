# sentinel's build. Tools are pinned and installed into ./bin through the Go
# module proxy, so a fresh machine needs nothing but Go.

GO          ?= go
BIN         := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
PROMTOOL    := $(BIN)/promtool
PROMTOOL_VERSION := v0.316.0
BENCHTIME   ?= 1x
BENCH       ?= .

.PHONY: build test vet staticcheck alerts bench demo clean

build:
	$(GO) build -o $(BIN)/sentinel ./cmd/sentinel

# The one test command: README, CI (.ci/run) and developers run exactly this.
test: vet staticcheck alerts
	$(GO) test -race -count=1 ./...
	$(GO) run ./cmd/sentinel -check-policies -policies policies
	$(GO) run ./cmd/sentinel -test-policies -policies policies policies/tests/*.yaml

vet:
	@unformatted="$$(gofmt -l cmd internal)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The alerting rules for sentinel itself, checked and unit-tested.
alerts: $(PROMTOOL)
	$(PROMTOOL) check rules deploy/alerts.yml
	cd deploy && $(PROMTOOL) test rules alerts_test.yml

$(PROMTOOL):
	GOBIN=$(BIN) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# Benchmarks hold the speed and memory targets; see README "Performance".
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

demo:
	$(GO) run ./cmd/sentinel -demo

clean:
	rm -rf $(BIN)
