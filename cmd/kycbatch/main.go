// Command kycbatch is the command-line client of the kycbatch API, built on
// package client: it creates entities, uploads CSV batches and follows them,
// lists their records and downloads their usage reports.
//
//	kycbatch [--url URL] [--api-key KEY] [--output text|json] COMMAND [flags] [args]
//
// The service's URL and API key default to $KYCBATCH_URL
// (http://127.0.0.1:8080 when unset) and $KYCBATCH_API_KEY. Exit codes: 0
// success, 1 local error (writing --out), 2 usage error, 3 request refused
// by the API (4xx: its code and message are printed), 4 server or network
// error (5xx, 429 after retries, unreachable), 5 the batch ended failed or
// cancelled, 130 interrupted.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err))
}

// exitCode is the process status of run's result; run has already printed
// the error.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
