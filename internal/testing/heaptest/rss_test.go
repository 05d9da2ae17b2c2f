package heaptest_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/kycbatch/kycbatch/internal/testing/heaptest"
)

// TestRSS touches 64 MB and checks that the peak resident set grows by most
// of it, then frees it and checks that ResetPeak brings the peak back down to
// the current resident set. It is not parallel: another test's allocations
// would move the figures.
func TestRSS(t *testing.T) {
	var rss heaptest.RSS
	if err := rss.ResetPeak(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot measure the resident set here: %v", err)
		}
		t.Fatal(err)
	}
	debug.FreeOSMemory() // start from a heap with no spare resident pages to reuse
	if err := rss.ResetPeak(); err != nil {
		t.Fatal(err)
	}
	before := currentRSS(t, rss)

	touch(64 << 20)
	if growth := peakRSS(t, rss) - before; growth < 50<<20 {
		t.Errorf("peak resident set grew by %d MB after touching 64 MB; want at least 50 MB", growth>>20)
	}

	debug.FreeOSMemory()
	if err := rss.ResetPeak(); err != nil {
		t.Fatal(err)
	}
	// The peak may have moved a little between the two reads, never by tens of MB.
	if over := peakRSS(t, rss) - currentRSS(t, rss); over > 16<<20 {
		t.Errorf("peak is %d MB above the current resident set after ResetPeak; want the 64 MB forgotten", over>>20)
	}
}

// touch allocates size bytes and writes to every page, which fresh pages
// need to become resident; the memory is garbage when it returns.
func touch(size int) {
	buf := make([]byte, size)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	runtime.KeepAlive(buf)
}

func currentRSS(tb testing.TB, rss heaptest.RSS) int64 {
	tb.Helper()
	n, err := rss.Current()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func peakRSS(tb testing.TB, rss heaptest.RSS) int64 {
	tb.Helper()
	n, err := rss.Peak()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
