package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// TestProcessSIGTERM runs the simulator as a real process: it serves its
// stats, and SIGTERM stops it cleanly (exit status 0).
func TestProcessSIGTERM(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, "SUMSUB_SIM_ADDR="+addr, "SUMSUB_SIM_FAIL_RATE=0.5", "SUMSUB_SIM_SEED=7")
	if status := proctest.WaitHTTP(t, "http://"+addr+"/_sim/stats"); status != http.StatusOK {
		t.Fatalf("/_sim/stats: %d", status)
	}
	p.Terminate(t)
	p.CheckCleanExit(t, 10*time.Second)
}

// TestRun serves with the dev credentials, says where once it listens, never
// prints the secret, and returns without error when its context ends, even
// with a request stalled: that one is cut, unanswered.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, stdout := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-latency", "0", "-stall-rate", "1", "-stall", "1m"}, func(string) string { return "" }, stdout)
		stdout.Close()
	}()
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("no line on stdout; run: %v", <-done)
	}
	baseURL, ok := strings.CutPrefix(lines.Text(), "sumsubsim listening on ")
	if !ok || !strings.HasPrefix(baseURL, "http://127.0.0.1:") {
		t.Fatalf("first line %q, want sumsubsim listening on http://127.0.0.1:PORT", lines.Text())
	}

	c := sumsub.New(sumsub.Config{BaseURL: baseURL, AppToken: sumsubsim.DevAppToken, SecretKey: sumsubsim.DevSecretKey})
	stalled := make(chan error, 1)
	go func() {
		_, err := c.ReuseApplicant(t.Context(), "tok-stalled", "")
		stalled <- err
	}()
	waitStalls(t, baseURL)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v, want nil", err)
		}
	case <-time.After(drainTimeout + 4*time.Second):
		t.Fatalf("run still serving %v after its context ended", drainTimeout+4*time.Second)
	}
	if err := <-stalled; err == nil {
		t.Error("the stalled request was answered, want it dropped")
	}
	rest, _ := io.ReadAll(out)
	if strings.Contains(string(rest), sumsubsim.DevSecretKey) {
		t.Errorf("stdout shows the secret: %q", rest)
	}
}

// waitStalls waits until the simulator at baseURL has begun a stall.
func waitStalls(tb testing.TB, baseURL string) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(baseURL + "/_sim/stats")
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `"stalls":1`) {
			return
		}
	}
	tb.Fatal("no stall began within 5 s")
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "flag provided but not defined: -nope"},
		{name: "argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
		{name: "fail rate", args: []string{"-fail-rate", "1.5"}, wantErr: "-fail-rate: want a fraction between 0 and 1, got 1.5"},
		{name: "rates add up", args: []string{"-fail-rate", "0.6", "-stall-rate", "0.6"}, wantErr: "-fail-rate plus -stall-rate: want at most 1"},
		{name: "rate", args: []string{"-rate", "0"}, wantErr: "-rate: want a positive number"},
		{name: "negative stall", args: []string{"-stall", "-1s"}, wantErr: "-stall: want a duration of 0 or more"},
		{name: "burst half set", args: []string{"-burst-every", "10s"}, wantErr: "-burst-every and -burst-for: set both or neither"},
		{name: "endless burst", args: []string{"-burst-every", "1s", "-burst-for", "1s"}, wantErr: "the burst would never end"},
		{name: "address", args: []string{"-addr", "8090"}, wantErr: `-addr: want host:port, got "8090"`},
		{name: "environment", env: map[string]string{"SUMSUB_SIM_SEED": "x"}, wantErr: `SUMSUB_SIM_SEED="x"`},
		{name: "webhook url", args: []string{"-webhook-url", "127.0.0.1:8080/webhooks/sumsub"}, wantErr: "-webhook-url: want an http(s) URL"},
		{name: "negative webhook delay", args: []string{"-webhook-delay", "-1s"}, wantErr: "-webhook-delay: want a duration of 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run: %v, want a usage error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFlagsOverEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SUMSUB_SIM_FAIL_RATE": "0.2", "SUMSUB_SIM_RATE": "5", "SUMSUB_APP_TOKEN": "sbx:other", "SUMSUB_SECRET_KEY": "other-secret",
		"SUMSUB_WEBHOOK_SECRET": "hook-secret", "SUMSUB_SIM_WEBHOOK_DELAY": "2s"}
	cfg, err := loadConfig([]string{"-rate", "7", "-webhook-url", "http://127.0.0.1:8080/webhooks/sumsub"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{Addr: "127.0.0.1:8090", Sim: sumsubsim.Config{
		AppToken: "sbx:other", SecretKey: "other-secret", RateLimit: 7, Latency: 50 * time.Millisecond,
		Faults:  sumsubsim.Faults{FailRate: 0.2, Stall: 5 * time.Second},
		Webhook: sumsubsim.Webhook{URL: "http://127.0.0.1:8080/webhooks/sumsub", Secret: "hook-secret", Delay: 2 * time.Second},
	}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}
