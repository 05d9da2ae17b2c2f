# kycbatch: the commands for humans and CI. `make help` lists them.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...
# Packages whose tests measure rates and latencies: they run after the
# others, one package at a time, so that no other test competes for the CPU.
TIMED_PKGS := ./internal/ratelimit ./internal/worker
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# versitygw: an S3 server that checks signatures and link expiry, for the storage tests.
VERSITYGW   := github.com/versity/versitygw/cmd/versitygw@v1.8.0
GOBIN       := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
FUZZTIME ?= 2m
# Runs of each benchmark (BENCHMARKS.md shows their medians); the rate runs take a minute each.
BENCH_COUNT ?= 5
RATE_COUNT  ?= 3
# Records of a make chaos run, and the length of its Sumsub outages (make test runs 400, 3 s).
CHAOS_RECORDS ?= 2000
CHAOS_OUTAGE_SECONDS ?= 60

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the whole service locally (API, worker, embedded S3, Sumsub simulator) on its defaults
	$(GO) build -o bin/devserver ./cmd/devserver
	@# exec: the dev server is make's child itself, so stopping make (which
	@# passes SIGTERM and SIGINT on to its children) stops it, ports freed.
	exec bin/devserver

.PHONY: tools
tools: ## Install the pinned tools the tests use (versitygw); name the Debian packages they need
	@command -v versitygw >/dev/null || { echo "installing $(VERSITYGW)"; $(GO) install $(VERSITYGW); }
	@for p in pgbouncer:pgbouncer promtool:prometheus; do \
	  command -v $${p%%:*} >/dev/null || PATH=$$PATH:/usr/sbin command -v $${p%%:*} >/dev/null || \
	  { echo "missing $${p%%:*}: apt-get install -y $${p#*:}"; exit 1; }; done

.PHONY: test
test: tools ## Run every test against the local PostgreSQL, Redis and S3 servers (race detector on)
	$(GO) test -race -count=1 -timeout 12m $$($(GO) list $(PKGS) | grep -v $(TIMED_PKGS:./%=-e /%$$))
	$(GO) test -race -count=1 -timeout 12m -p 1 $(TIMED_PKGS)

.PHONY: test/short
test/short: tools ## Run the tests without the race detector
	$(GO) test -count=1 -timeout 12m $(PKGS)

.PHONY: bench
bench: tools ## Run the benchmarks (about 50 min) and write BENCHMARKS.md from their medians
	@mkdir -p .bench
	set -o pipefail; { \
	  $(GO) test ./internal/ingest -run '^$$' -bench ParseCSV5000 -benchmem -count $(BENCH_COUNT) && \
	  $(GO) test ./internal/httpapi -run '^$$' -bench Upload5000 -benchtime 20x -count $(BENCH_COUNT) && \
	  $(GO) test ./internal/httpapi -run '^$$' -bench BatchStatus32 -benchtime 3000x -count $(BENCH_COUNT) && \
	  $(GO) test ./cmd/api -run '^$$' -bench ConcurrentUploads -benchtime 1x -count $(RATE_COUNT) && \
	  $(GO) test ./internal/reports -run '^$$' -bench BuildReport -benchtime 5x -count $(BENCH_COUNT) && \
	  $(GO) test ./internal/reports -run '^$$' -bench ReportFlood -benchtime 1x -count $(RATE_COUNT) && \
	  $(GO) test ./internal/schedule -run '^$$' -bench Next -benchtime 10x -count $(BENCH_COUNT) && \
	  $(GO) test ./internal/worker -run '^$$' -bench 'PipelineCeiling|Fairness' -benchtime 1x -count $(BENCH_COUNT) -timeout 30m && \
	  $(GO) test ./internal/worker -run '^$$' -bench 'BusinessShares|Estimate|PipelineThroughPgBouncer' -benchtime 1x -count $(RATE_COUNT) -timeout 30m && \
	  $(GO) test ./internal/worker -run '^$$' -bench StartFromIdle -benchtime 5x -count 1 -timeout 30m && \
	  $(GO) test ./internal/worker -run '^$$' -bench PauseResume -benchtime 3x -count $(RATE_COUNT) -timeout 30m && \
	  $(GO) test ./internal/worker -run '^$$' -bench Batch5000 -benchtime 1x -count 1 -timeout 30m && \
	  IDLE_SECONDS=120 $(GO) test ./cmd/worker -run '^$$' -bench Idle -benchtime 1x -count 2 -timeout 30m && \
	  RATE_SECONDS=60 $(GO) test ./cmd/worker -run '^$$' -bench RateUse -benchtime 1x -count $(RATE_COUNT) -timeout 30m; \
	} | tee .bench/bench.txt
	$(GO) run ./scripts/benchmd $$(test -f .bench/chaos.txt && echo -chaos .bench/chaos.txt) < .bench/bench.txt > BENCHMARKS.md
	@echo "BENCHMARKS.md written"

.PHONY: chaos
chaos: ## Fault injection: 2,000 records through SIGKILLed workers, a flushed Redis, a PostgreSQL crash, a faulty Sumsub and its outages (about 8 min)
	@mkdir -p .bench
	set -o pipefail; CHAOS_RECORDS=$(CHAOS_RECORDS) CHAOS_OUTAGE_SECONDS=$(CHAOS_OUTAGE_SECONDS) $(GO) test ./internal/chaos -run 'TestChaos|TestSentinelFailover' -count 1 -v -timeout 30m | tee .bench/chaos.txt

.PHONY: fuzz
fuzz: ## Fuzz the CSV validator, the upload's file reading and its multipart parsing, FUZZTIME each (default 2m)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzParseCSV$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzReadFile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/httpapi -run '^$$' -fuzz '^FuzzMultipartUpload$$' -fuzztime $(FUZZTIME)

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: migrate
migrate: ## Apply the database migrations to DATABASE_URL
	$(GO) run ./cmd/api migrate

.PHONY: tidy
tidy: ## Tidy go.mod and go.sum
	$(GO) mod tidy
