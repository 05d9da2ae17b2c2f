package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// postgres is a PostgreSQL cluster of the suite's own, so that restarting it
// disturbs no other test.
type postgres struct {
	bin, dir, port string
	asPostgres     bool // run the server as the postgres user: it refuses to run as root
}

// startPostgres creates a cluster in a temporary directory and starts it on a
// free port. Without PostgreSQL's server binaries the test fails in CI and is
// skipped elsewhere.
func startPostgres(t *testing.T) *postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
		}
		t.Skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
	}
	sort.Strings(bins)
	p := &postgres{bin: filepath.Dir(bins[len(bins)-1]), port: freePort(t), asPostgres: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "kycbatch-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p.dir = filepath.Join(dir, "data")
	if p.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	p.pgctl(t, "initdb", "-s", "-o", "--auth=trust --username=postgres --encoding=UTF8 --no-sync")
	p.start(t)
	t.Cleanup(func() { p.run("stop", "-m", "immediate") })
	return p
}

// start starts the server and waits until it accepts connections.
func (p *postgres) start(t *testing.T) {
	t.Helper()
	p.pgctl(t, "start", "-w", "-t", "60", "-l", filepath.Join(p.dir, "server.log"), "-o",
		fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", p.port, p.dir))
}

// crash stops the server at once, as a crash would: no checkpoint, open
// connections cut, recovery at the next start.
func (p *postgres) crash(t *testing.T) {
	t.Helper()
	p.pgctl(t, "stop", "-w", "-m", "immediate")
}

func (p *postgres) pgctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := p.run(args...); err != nil {
		t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

func (p *postgres) run(args ...string) ([]byte, error) {
	args = append([]string{"-D", p.dir}, args...)
	cmd := exec.Command(filepath.Join(p.bin, "pg_ctl"), args...)
	if p.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", cmd.Path}, args...)...)
	}
	return cmd.CombinedOutput()
}

// url is the URL of database name on the cluster.
func (p *postgres) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", p.port, name)
}

// createDatabase creates the service's database.
func (p *postgres) createDatabase(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
}

// startRedis runs a Redis server of the suite's own, so that flushing it
// disturbs no other test, and returns its URL and a client.
func startRedis(t *testing.T) (string, *redis.Client) {
	t.Helper()
	port := freePort(t)
	redisProc(t, "redis", port).start(t)
	url := "redis://127.0.0.1:" + port + "/0"
	opts, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	waitUntil(t, 10*time.Second, "redis-server answers", func() bool { return rdb.Ping(context.Background()).Err() == nil })
	return url, rdb
}

// redisProc is a redis-server on port, keeping nothing on disk, in a
// directory of its own (a replica writes the primary's snapshot to its
// directory when it synchronises); args add to its options.
func redisProc(t *testing.T, name, port string, args ...string) *proc {
	return newProc(t, name, nil, append([]string{redisServer(t), "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, args...)...)
}

// freePort returns a loopback port no one listens on.
func freePort(t *testing.T) string {
	_, port, _ := net.SplitHostPort(proctest.FreeAddr(t))
	return port
}

// redisServer is the path of redis-server; without it the test fails in CI
// and is skipped elsewhere.
func redisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	return bin
}

// sentinelMaster is the name the Sentinels know the primary by.
const sentinelMaster = "kycbatch"

// sentinelSetup is a Redis primary, its replica and three Sentinels that
// watch them (quorum 2), on loopback ports: the smallest Sentinel
// deployment that survives the loss of the primary.
type sentinelSetup struct {
	primary, replica *proc
	sentinelAddrs    []string
	// url is REDIS_URL for the service: the Sentinels and the master's name.
	url string
}

// startSentinels starts the setup and waits until every Sentinel knows the
// replica and the other Sentinels, and the replica has synchronised. A
// Sentinel calls the primary down after 1 s without an answer.
func startSentinels(t *testing.T) *sentinelSetup {
	t.Helper()
	ctx := context.Background()
	primaryPort, replicaPort := freePort(t), freePort(t)
	s := &sentinelSetup{
		primary: redisProc(t, "redis primary", primaryPort),
		replica: redisProc(t, "redis replica", replicaPort, "--replicaof", "127.0.0.1", primaryPort),
	}
	s.primary.start(t)
	s.replica.start(t)
	dir := t.TempDir()
	for i := range 3 {
		port := freePort(t)
		// A Sentinel rewrites its configuration file: each has its own.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		err := os.WriteFile(conf, []byte(fmt.Sprintf(`port %s
bind 127.0.0.1
sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %[2]s 1000
sentinel failover-timeout %[2]s 5000
sentinel parallel-syncs %[2]s 1
`, port, sentinelMaster, primaryPort)), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		newProc(t, fmt.Sprintf("sentinel %d", i+1), nil, redisServer(t), conf, "--sentinel").start(t)
		s.sentinelAddrs = append(s.sentinelAddrs, "127.0.0.1:"+port)
	}
	s.url = "redis-sentinel://" + strings.Join(s.sentinelAddrs, ",") + "/0?master=" + sentinelMaster

	replica := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + replicaPort})
	defer replica.Close()
	waitUntil(t, 30*time.Second, "the replica synchronises with the primary", func() bool {
		info, _ := replica.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	for _, addr := range s.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		waitUntil(t, 30*time.Second, "Sentinel "+addr+" knows the replica and the other Sentinels", func() bool {
			replicas, _ := sc.Replicas(ctx, sentinelMaster).Result()
			others, _ := sc.Sentinels(ctx, sentinelMaster).Result()
			return len(replicas) == 1 && len(others) == 2
		})
		sc.Close()
	}
	return s
}

// master is the address the Sentinels name as the primary's now.
func (s *sentinelSetup) master(t *testing.T) string {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinelAddrs[0]})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(context.Background(), sentinelMaster).Result()
	if err != nil {
		return ""
	}
	return net.JoinHostPort(addr[0], addr[1])
}

// waitUntil polls cond until it holds; the test fails if it does not within timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}
}
