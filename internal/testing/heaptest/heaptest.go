// Package heaptest measures how far a piece of code grows the heap (and, on
// Linux, the process's resident set) at its peak, for the tests and
// benchmarks that prove streaming code stays flat.
package heaptest

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// PeakGrowth runs fn and returns the largest heap in use seen while it ran,
// sampled every 2 ms, less the heap in use (after a collection) before it.
func PeakGrowth(fn func()) int64 {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	return int64(peak.Load()) - int64(base.HeapInuse)
}
