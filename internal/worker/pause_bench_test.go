package worker_test

import (
	"testing"
	"time"

	"github.com/kycbatch/kycbatch/internal/imports"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
)

// BenchmarkPauseResume pauses the sumsub queue (as ops do from the
// dashboard, Asynq's PauseQueue) in the middle of a batch at 10/s, counts
// the Sumsub requests from 1 s to 3 s after the pause, then resumes and
// reports when the first request came and how many were sent in the
// second second after resuming (the full rate: 10).
func BenchmarkPauseResume(b *testing.B) {
	const rate = 10
	e := apitest.New(b, apitest.Options{SumsubRate: rate})
	e.StartWorker(b, 5*time.Second)
	key, _ := e.Business(b)
	var after1s, firstCall, secondSecond float64
	for i := 0; b.Loop(); i++ {
		batchID := e.UploadBatch(b, key, apitest.CSVFile("pause"+string(rune('a'+i)), e.Entities(b, key, 80)))
		waitProcessed(b, e, key, batchID, 20, time.Minute)
		paused := time.Now()
		if err := e.Inspector.PauseQueue(imports.Queue); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(paused.Add(time.Second)))
		n1 := e.Sim.Stats().Requests
		time.Sleep(time.Until(paused.Add(3 * time.Second)))
		after1s += float64(e.Sim.Stats().Requests - n1)

		before := e.Sim.Stats().Requests
		resumed := time.Now()
		if err := e.Inspector.UnpauseQueue(imports.Queue); err != nil {
			b.Fatal(err)
		}
		for e.Sim.Stats().Requests == before {
			if time.Since(resumed) > 10*time.Second {
				b.Fatal("no Sumsub request within 10 s of resuming")
			}
			time.Sleep(5 * time.Millisecond)
		}
		firstCall += time.Since(resumed).Seconds()
		time.Sleep(time.Until(resumed.Add(time.Second)))
		n := e.Sim.Stats().Requests
		time.Sleep(time.Until(resumed.Add(2 * time.Second)))
		secondSecond += float64(e.Sim.Stats().Requests - n)
		e.WaitBatch(b, key, batchID, time.Minute)
	}
	b.ReportMetric(after1s/float64(b.N), "calls-1s-to-3s-after-pause")
	b.ReportMetric(firstCall/float64(b.N), "first-call-after-resume-s")
	b.ReportMetric(secondSecond/float64(b.N), "calls-in-2nd-second-after-resume")
}
