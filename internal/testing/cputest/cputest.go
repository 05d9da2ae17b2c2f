// Package cputest measures the CPU time the service's processes on this
// machine spend: a given process (the test's own, a command it started),
// the PostgreSQL server (its processes, and the backends it has reaped) and
// the Redis server, from /proc. Benchmarks turn it into CPU per record or
// per second at rest. Linux only; the figures count every client of those
// servers, so a benchmark measures alone.
package cputest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// tick is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on Linux
// whatever the kernel's own tick.
const tick = 10 * time.Millisecond

// Sample is CPU time used so far.
type Sample struct {
	Process  time.Duration
	Postgres time.Duration
	Redis    time.Duration
}

// Total is the sum of the three.
func (s Sample) Total() time.Duration { return s.Process + s.Postgres + s.Redis }

// Add returns s plus t: the CPU time of two intervals.
func (s Sample) Add(t Sample) Sample {
	return Sample{Process: s.Process + t.Process, Postgres: s.Postgres + t.Postgres, Redis: s.Redis + t.Redis}
}

// Sub returns s minus t: the CPU time used between two samples.
func (s Sample) Sub(t Sample) Sample {
	return Sample{Process: s.Process - t.Process, Postgres: s.Postgres - t.Postgres, Redis: s.Redis - t.Redis}
}

// Take samples process pid (0: this process), PostgreSQL and Redis.
func Take(pid int) (Sample, error) {
	var s Sample
	if pid == 0 {
		pid = os.Getpid()
	}
	self, err := stat(strconv.Itoa(pid))
	if err != nil {
		return s, err
	}
	s.Process = self.used
	procs, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return s, err
	}
	for _, comm := range procs {
		name, err := os.ReadFile(comm)
		if err != nil {
			continue // the process has exited
		}
		dir := filepath.Base(filepath.Dir(comm))
		switch strings.TrimSpace(string(name)) {
		case "postgres":
			st, err := stat(dir)
			if err != nil {
				continue
			}
			s.Postgres += st.used
			if parent, err := os.ReadFile("/proc/" + strconv.Itoa(st.ppid) + "/comm"); err != nil || strings.TrimSpace(string(parent)) != "postgres" {
				s.Postgres += st.reaped // the postmaster: its backends that have exited
			}
		case "redis-server":
			if st, err := stat(dir); err == nil {
				s.Redis += st.used
			}
		}
	}
	return s, nil
}

// procStat is what /proc/PID/stat says of a process's CPU.
type procStat struct {
	ppid   int
	used   time.Duration // its own user and system time
	reaped time.Duration // its waited-for children's
}

func stat(pid string) (procStat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces: fields start after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%s/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f))
	}
	n := func(k int) time.Duration { // field k of stat(5), from 1
		v, _ := strconv.ParseInt(f[k-3], 10, 64)
		return time.Duration(v) * tick
	}
	ppid, _ := strconv.Atoi(f[1])
	return procStat{ppid: ppid, used: n(14) + n(15), reaped: n(16) + n(17)}, nil
}
