// Package redistest gives each test package its own Redis database number on
// the test server, so packages running in parallel never see each other's
// queues. Numbers 1..15 are claimed with a lease in database 0.
package redistest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// serverAddr is the Redis server of the tests.
func serverAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// URL claims a free, flushed database number for the test and returns its URL;
// the claim is released (and the database flushed) when the test ends.
func URL(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: serverAddr()})
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("Redis not reachable at %s: %v", serverAddr(), err)
		}
		tb.Fatalf("Redis not reachable at %s: %v", serverAddr(), err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for db := 1; db <= 15; db++ {
			lease := fmt.Sprintf("kycbatch:test:db:%d", db)
			ok, err := admin.SetNX(ctx, lease, os.Getpid(), 15*time.Minute).Result()
			if err != nil {
				tb.Fatal(err)
			}
			if !ok {
				continue
			}
			url := fmt.Sprintf("redis://%s/%d", serverAddr(), db)
			flush(tb, url)
			tb.Cleanup(func() {
				flush(tb, url)
				c := redis.NewClient(&redis.Options{Addr: serverAddr()})
				defer c.Close()
				c.Del(context.Background(), lease)
			})
			return url
		}
		if time.Now().After(deadline) {
			tb.Fatal("no free Redis database number for the test after 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns a client of a database of the test's own (URL), closed
// when the test ends.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(URL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

func flush(tb testing.TB, url string) {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		tb.Fatal(err)
	}
}
