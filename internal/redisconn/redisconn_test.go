package redisconn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func TestParseSentinel(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want redis.FailoverOptions
	}{
		{"redis-sentinel://s1:26379,s2:26380,s3/2?master=kycbatch", redis.FailoverOptions{
			MasterName: "kycbatch", SentinelAddrs: []string{"s1:26379", "s2:26380", "s3:26379"}, DB: 2,
		}},
		{"redis-sentinel://:pw@10.0.0.1:5000?master=m", redis.FailoverOptions{
			MasterName: "m", SentinelAddrs: []string{"10.0.0.1:5000"}, Password: "pw", SentinelPassword: "pw",
		}},
		{"redis-sentinel://app:pw@s1/?master=m", redis.FailoverOptions{
			MasterName: "m", SentinelAddrs: []string{"s1:26379"}, Username: "app", Password: "pw", SentinelUsername: "app", SentinelPassword: "pw",
		}},
	} {
		opt, err := Parse(tt.url)
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		if opt.failover == nil {
			t.Errorf("%s: not a Sentinel URL", tt.url)
			continue
		}
		if diff := cmp.Diff(tt.want, *opt.failover); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.url, diff)
		}
	}
}

func TestParseOneServer(t *testing.T) {
	opt, err := Parse("redis://:pw@cache:6380/3")
	if err != nil {
		t.Fatal(err)
	}
	if opt.failover != nil || opt.single.Addr != "cache:6380" || opt.single.DB != 3 || opt.single.Password != "pw" {
		t.Errorf("parsed %+v", opt.single)
	}
}

// A bad URL is refused with what REDIS_URL may be, and never quotes the password.
func TestParseRefuses(t *testing.T) {
	for _, url := range []string{
		"redis-sentinel://:secret-pw@s1,s2",                  // no master
		"redis-sentinel://:secret-pw@s1/x?master=m",          // bad database
		"redis-sentinel://:secret-pw@s1,,s2?master=m",        // empty address
		"redis-sentinel://:secret-pw@s1?master=m&dial=1",     // unknown parameter
		"memcached://:secret-pw@cache:11211",                 // another scheme
		"redis://:secret-pw@cache:6379/notanumber",           // go-redis refuses it
		"redis-sentinel://:secret-pw@s1?master=m&db=1&db=2%", // a bad query
	} {
		_, err := Parse(url)
		if err == nil {
			t.Errorf("%s: accepted", url)
			continue
		}
		if !strings.Contains(err.Error(), "redis-sentinel://") || strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("%s: %v", url, err)
		}
	}
}
