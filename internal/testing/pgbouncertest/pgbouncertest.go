// Package pgbouncertest runs a real PgBouncer (Debian's pgbouncer package) in
// transaction pooling mode in front of a test database, for the tests of
// kycbatch through a connection pooler. Only tests import it.
package pgbouncertest

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/testing/proctest"
)

// URL starts a PgBouncer in transaction pooling mode that forwards to the
// server of databaseURL (a loopback PostgreSQL with trust auth, as the tests
// use) and returns databaseURL through it, with the statement mode
// kycbatch's documentation gives for PgBouncer: default_query_exec_mode =
// cache_describe (no named prepared statements). PgBouncer stops when the
// test ends.
func URL(tb testing.TB, databaseURL string) string {
	tb.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/pgbouncer"); err != nil {
			tb.Fatal("pgbouncer not found: apt-get install -y pgbouncer")
		}
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	addr := proctest.FreeAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	// PgBouncer refuses to run as root: it then runs as postgres, which
	// must read its files.
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	users := filepath.Join(dir, "users.txt")
	conf := filepath.Join(dir, "pgbouncer.ini")
	write(tb, users, fmt.Sprintf("%q \"\"\n", u.User.Username()))
	write(tb, conf, fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
server_reset_query =
log_connections = 0
log_disconnections = 0
`, u.Hostname(), u.Port(), port, users))
	args := []string{conf}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres"}, args...)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck // its output tells
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck // it may have exited
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // it may have exited
			<-exited
		}
		if tb.Failed() {
			tb.Logf("pgbouncer's log:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			tb.Fatalf("pgbouncer exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgbouncer does not listen on %s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.Host = addr
	q := u.Query()
	q.Set("default_query_exec_mode", "cache_describe")
	u.RawQuery = q.Encode()
	return u.String()
}

func write(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}
