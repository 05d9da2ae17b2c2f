// Package redisconn reads REDIS_URL and makes the clients of every part of
// kycbatch that talks to Redis (the queues, the schedule, the limiter, the
// circuit breaker, the dashboard): one server, or the primary that Redis
// Sentinel names, followed through a failover.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Options are a parsed REDIS_URL.
type Options struct {
	single   *redis.Options
	failover *redis.FailoverOptions
}

// Format is what REDIS_URL may be, for error messages.
const Format = "want redis://[:password@]host:port[/db], rediss://… or redis-sentinel://[:password@]host1:port1,host2:port2[/db]?master=NAME"

// sentinelPort is Sentinel's default port.
const sentinelPort = "26379"

// Parse reads a Redis URL:
//
//	redis://[[user]:password@]host[:port][/db]  (rediss:// for TLS; go-redis's options as query parameters)
//	redis-sentinel://[[user]:password@]host1[:port1][,host2[:port2]…][/db]?master=NAME
//
// The second is Asynq's scheme with a database number: the addresses are
// Sentinels' (port 26379 unless given), master is the name they monitor,
// and the password authenticates to the Redis servers and to the Sentinels
// both.
func Parse(rawURL string) (Options, error) {
	scheme, _, _ := strings.Cut(rawURL, "://")
	switch scheme {
	case "redis", "rediss":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", Format, err)
		}
		return Options{single: opt}, nil
	case "redis-sentinel":
		return parseSentinel(rawURL)
	default:
		return Options{}, errors.New(Format)
	}
}

func parseSentinel(rawURL string) (Options, error) {
	// The host list is not a URL's host (a host without a port before a
	// comma is not one): it is cut out before the rest is parsed.
	rest := strings.TrimPrefix(rawURL, "redis-sentinel://")
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	hosts := authority[strings.LastIndex(authority, "@")+1:]
	u, err := url.Parse("redis-sentinel://" + strings.TrimSuffix(authority, hosts) + "sentinels" + rest[end:])
	if err != nil {
		return Options{}, errors.New(Format)
	}
	opt := &redis.FailoverOptions{}
	q := u.Query()
	opt.MasterName = q.Get("master")
	if opt.MasterName == "" {
		return Options{}, fmt.Errorf("%s: the Sentinel URL names no master", Format)
	}
	for k := range q {
		if k != "master" {
			return Options{}, fmt.Errorf("%s: unknown parameter %q", Format, k)
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return Options{}, fmt.Errorf("%s: an empty Sentinel address", Format)
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, sentinelPort)
		}
		opt.SentinelAddrs = append(opt.SentinelAddrs, h)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return Options{}, fmt.Errorf("%s: bad database number %q", Format, db)
		}
		opt.DB = n
	}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
		opt.SentinelUsername, opt.SentinelPassword = opt.Username, opt.Password
	}
	return Options{failover: opt}, nil
}

// NewClient returns a client of the server, or of Sentinel's current
// primary: it asks the Sentinels which server that is, and when they elect
// another it closes its connections to the old one and follows.
func (o Options) NewClient() *redis.Client {
	if o.failover != nil {
		return redis.NewFailoverClient(o.failover)
	}
	return redis.NewClient(o.single)
}

// MakeRedisClient makes Options an asynq.RedisConnOpt, for the parts of
// Asynq that open a connection of their own (the scheduler).
func (o Options) MakeRedisClient() any { return o.NewClient() }

// SetLogger sends what go-redis logs of its connections (a primary
// unreachable, Sentinel naming a new one) to logger, as warnings with
// component=redis, instead of its own plain lines on standard error. The
// setting is go-redis's, for the whole process.
func SetLogger(logger *slog.Logger) {
	redis.SetLogger(goRedisLogger{logger.With("component", "redis")})
}

type goRedisLogger struct{ logger *slog.Logger }

func (l goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, fmt.Sprintf(format, v...))
}
