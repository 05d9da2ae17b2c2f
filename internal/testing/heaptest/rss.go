package heaptest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// RSS reads the resident set of this process from Linux's /proc/self. Unlike
// the heap figures of PeakGrowth it counts everything the process holds in
// memory (heap not yet returned to the system, stacks, runtime metadata), and
// its peak is kept by the kernel, so no sampling can miss a short spike. The
// zero value is ready to use; on systems without /proc every method returns
// an error.
type RSS struct{}

// ResetPeak sets the kernel's high-water mark of the resident set (VmHWM) to
// the current resident set, by writing "5" to /proc/self/clear_refs (Linux
// 4.0 and later). It fails where that file cannot be written, as in some
// sandboxes: callers then have no peak to measure.
func (RSS) ResetPeak() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak resident set: %w", err)
	}
	return nil
}

// Current returns the resident set in bytes (VmRSS).
func (RSS) Current() (int64, error) {
	return statusBytes("VmRSS")
}

// Peak returns the largest resident set in bytes (VmHWM) since the process
// started or ResetPeak was last called.
func (RSS) Peak() (int64, error) {
	return statusBytes("VmHWM")
}

// statusBytes returns a field of /proc/self/status that the kernel gives in kB.
func statusBytes(field string) (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", field, err)
	}
	prefix := []byte(field + ":")
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), prefix)
		if !ok {
			continue
		}
		num, unit, _ := bytes.Cut(bytes.TrimSpace(rest), []byte(" "))
		kb, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || string(unit) != "kB" {
			return 0, fmt.Errorf("read %s: unexpected line %q in /proc/self/status", field, sc.Bytes())
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("read %s: not in /proc/self/status", field)
}
