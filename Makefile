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

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: run
run: ## Start the whole service locally (API, worker, embedded S3, Sumsub simulator) on its defaults
	$(GO) run ./cmd/devserver

.PHONY: tools
tools: ## Install the pinned tools the tests use (versitygw)
	@command -v versitygw >/dev/null || { echo "installing $(VERSITYGW)"; $(GO) install $(VERSITYGW); }

.PHONY: test
test: tools ## Run every test against the local PostgreSQL, Redis and S3 servers (race detector on)
	$(GO) test -race -count=1 -timeout 12m $$($(GO) list $(PKGS) | grep -v $(TIMED_PKGS:./%=-e /%$$))
	$(GO) test -race -count=1 -timeout 12m -p 1 $(TIMED_PKGS)

.PHONY: test/short
test/short: tools ## Run the tests without the race detector
	$(GO) test -count=1 -timeout 12m $(PKGS)

.PHONY: bench
bench: tools ## Run the Go benchmarks (figures and commands: BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $(PKGS)

.PHONY: fuzz
fuzz: ## Fuzz the CSV validator and the multipart upload, FUZZTIME each (default 2m)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzParseCSV$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/ingest -run '^$$' -fuzz '^FuzzMultipartUpload$$' -fuzztime $(FUZZTIME)

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
