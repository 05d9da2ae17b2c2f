// Package proctest runs a command of this module as a real process, for the
// tests of start-up, probes and signals that an in-process run cannot prove.
package proctest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Process is a running command.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // how it exited, once exited is closed
}

// Start builds the command in the test's package directory and runs it with
// the environment plus env ("NAME=value"); it is killed when the test ends.
func Start(tb testing.TB, env ...string) *Process {
	tb.Helper()
	return StartPackage(tb, ".", env...)
}

// StartPackage is Start for another command of the module: dir is its
// package directory, relative to the test's (e.g. "../devserver"), so that a
// test can run the processes a deployment runs side by side.
func StartPackage(tb testing.TB, dir string, env ...string) *Process {
	tb.Helper()
	cmd := exec.Command(Build(tb, dir))
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	// Killed and reaped before the cleanups registered earlier (its
	// database, its Redis database) run, so that it never sees them go.
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// Build builds the command whose package directory is dir (relative to the
// test's) into the test's temporary directory and returns the binary's path,
// for tests that run it themselves (a CLI, with arguments).
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "cmd")
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// FreeAddr returns a loopback address no one listens on, for the process to take.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitHTTP polls url until it answers and returns its status; the test fails
// if it does not answer within 20 s.
func WaitHTTP(tb testing.TB, url string) int {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			return res.StatusCode
		}
	}
	tb.Fatalf("%s did not answer within 20 s", url)
	return 0
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Terminate sends SIGTERM.
func (p *Process) Terminate(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
}

// CheckCleanExit requires the process to exit with status 0 within timeout.
func (p *Process) CheckCleanExit(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	select {
	case <-p.exited:
		if p.err != nil {
			tb.Errorf("exit: %v, want status 0", p.err)
		}
	case <-time.After(timeout):
		tb.Errorf("still running %s after SIGTERM", timeout)
	}
}
