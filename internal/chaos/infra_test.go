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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
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
	p := &postgres{bin: filepath.Dir(bins[len(bins)-1]), port: strconv.Itoa(freePort(t)), asPostgres: os.Geteuid() == 0}
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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	port := strconv.Itoa(freePort(t))
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	url := "redis://127.0.0.1:" + port + "/0"
	opts, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(context.Background()).Err() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
	return url, rdb
}

// freePort returns a loopback port no one listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
