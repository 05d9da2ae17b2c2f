package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/storage/s3local"
	"github.com/kycbatch/kycbatch/internal/testing/cputest"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// BenchmarkIdle measures what a worker process, and the dev server (API,
// worker, S3 and simulator in one process), cost at rest: their share of a
// core, and the commands a second they send Redis (as MONITOR lists them on
// a Redis server of their own, leaving out those Lua scripts run inside
// Redis). IDLE_SECONDS (default 30) is the measured time, after settle.
func BenchmarkIdle(b *testing.B) {
	seconds := 30
	if v, err := strconv.Atoi(envOr("IDLE_SECONDS", "30")); err == nil && v > 0 {
		seconds = v
	}
	measure := time.Duration(seconds) * time.Second
	b.Run("worker", func(b *testing.B) {
		redisURL := privateRedis(b)
		s3 := httptest.NewServer(s3local.InMemory())
		b.Cleanup(s3.Close)
		ops := proctest.FreeAddr(b)
		p := proctest.Start(b, "DATABASE_URL="+dbtest.URL(b), "REDIS_URL="+redisURL,
			"S3_ENDPOINT="+s3.URL, "S3_FORCE_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y",
			"SUMSUB_APP_TOKEN=sbx:test", "SUMSUB_SECRET_KEY=secret", "SUMSUB_BASE_URL=http://127.0.0.1:1",
			"WORKER_METRICS_ADDR="+ops, "LOG_LEVEL=warn")
		proctest.WaitHTTP(b, "http://"+ops+"/healthz")
		idle(b, p, redisURL, measure)
	})
	b.Run("devserver", func(b *testing.B) {
		redisURL := privateRedis(b)
		api := proctest.FreeAddr(b)
		p := proctest.StartPackage(b, "../devserver", "DATABASE_URL="+dbtest.MissingURL(b), "REDIS_URL="+redisURL,
			"HTTP_ADDR="+api, "DEV_S3_ADDR="+proctest.FreeAddr(b), "SUMSUB_SIM_ADDR="+proctest.FreeAddr(b),
			"WORKER_METRICS_ADDR="+proctest.FreeAddr(b), "DATA_DIR="+b.TempDir(), "LOG_LEVEL=warn")
		proctest.WaitHTTP(b, "http://"+api+"/healthz")
		idle(b, p, redisURL, measure)
	})
}

// settle is left unmeasured after a start: start-up, the first
// reconciliation, the garbage collector.
const settle = 15 * time.Second

// idle reports process p's share of a core and the Redis commands a second
// it sent, over measure, after settle.
func idle(b *testing.B, p *proctest.Process, redisURL string, measure time.Duration) {
	time.Sleep(settle)
	var cpu time.Duration
	var commands int64
	for b.Loop() {
		before, err := cputest.Take(p.Pid())
		if err != nil {
			b.Fatal(err)
		}
		commands += monitor(b, redisURL, measure)
		after, err := cputest.Take(p.Pid())
		if err != nil {
			b.Fatal(err)
		}
		cpu += after.Process - before.Process
	}
	b.ReportMetric(100*cpu.Seconds()/(measure.Seconds()*float64(b.N)), "cpu-%")
	b.ReportMetric(float64(commands)/(measure.Seconds()*float64(b.N)), "redis-cmds/s")
}

// privateRedis starts a Redis server of the benchmark's own on a free port,
// so that its command count is the measured process's alone.
func privateRedis(b *testing.B) string {
	b.Helper()
	addr := proctest.FreeAddr(b)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		b.Fatalf("start redis-server: %v", err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "redis://" + addr + "/0"
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(context.Background()).Err() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("redis-server did not answer")
		}
	}
	return url
}

// monitor counts the commands clients send the Redis at url for d: the
// lines of redis-cli's MONITOR but those of Lua scripts (" lua]").
func monitor(b *testing.B, url string, d time.Duration) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "redis-cli", "-u", url, "monitor").Output() // ends with ctx
	var n int64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "] \"") && !strings.Contains(line, " lua]") {
			n++
		}
	}
	return n
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
