package app

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/kycbatch/kycbatch/internal/contract"
	"github.com/kycbatch/kycbatch/internal/rediskey"
	"github.com/kycbatch/kycbatch/internal/schedule"
)

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// readiness is the body of /readyz.
type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	// Sumsub is what holds the Sumsub calls back: the circuit breaker, and
	// ops pausing the queue. Shown, never a reason to be unready (the
	// process itself is fine).
	Sumsub *sumsubState `json:"sumsub,omitempty"`
}

// sumsubState is the Sumsub calls' detail in /readyz.
type sumsubState struct {
	Circuit string         `json:"circuit"` // closed or open
	Since   *contract.Time `json:"since,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	// Queue is the sumsub queue's state: running, or paused (from the
	// dashboard: no record is sent).
	Queue string `json:"queue,omitempty"`
}

// OpsHandler serves what every process answers ops with, on net/http alone
// (a worker links no API server): /healthz (the process serves HTTP),
// /readyz (PostgreSQL, Redis and S3 answer) and /metrics (Prometheus).
func (a *App) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n")) //nolint:errcheck // the client went away
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.Metrics.Handler())
	return mux
}

// checkDependencies checks PostgreSQL, Redis and S3 together, within ctx:
// what /readyz and kycbatch_dependency_up report.
func (a *App) checkDependencies(ctx context.Context) map[string]error {
	checks := map[string]func(context.Context) error{
		"postgres": a.Pool.Ping,
		"redis":    func(ctx context.Context) error { return a.Redis.Ping(ctx).Err() },
		"s3":       a.Files.Ping,
	}
	errs := make(map[string]error, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			err := check(ctx)
			mu.Lock()
			defer mu.Unlock()
			errs[name] = err
		})
	}
	wg.Wait()
	return errs
}

// readyz answers whether PostgreSQL, Redis and S3 all answer, checked
// together, each within readyTimeout. Failures are logged, not shown: the
// endpoint needs no key, so it says nothing of the network behind it.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	checks := a.checkDependencies(ctx)
	body := readiness{Status: "ok", Checks: make(map[string]string, len(checks))}
	for name, err := range checks {
		body.Checks[name] = "ok"
		if err != nil {
			body.Checks[name], body.Status = "unavailable", "unavailable"
			a.Logger.WarnContext(ctx, "readiness check failed", slog.String("dependency", name), slog.Any("error", err))
		}
	}
	if st, err := a.Circuit.Status(ctx); err == nil {
		body.Sumsub = &sumsubState{Circuit: "closed"}
		if st.Open {
			since := contract.Time(st.Since)
			body.Sumsub = &sumsubState{Circuit: "open", Since: &since, Reason: st.Reason}
		}
		if paused, err := a.Redis.Exists(ctx, rediskey.AsynqPaused(schedule.Queue)).Result(); err == nil {
			body.Sumsub.Queue = map[bool]string{false: "running", true: "paused"}[paused == 1]
		}
	}
	status := http.StatusOK
	if body.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	b, err := contract.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contract.ContentType)
	w.WriteHeader(status)
	w.Write(b) //nolint:errcheck // the client went away
}
