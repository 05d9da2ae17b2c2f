// Package metrics holds the Prometheus metrics of a kycbatch process: HTTP
// requests, Asynq queues, Sumsub calls, rate-limit waits, record outcomes and
// batches by status. One Metrics serves one process's /metrics.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the instruments of one process.
type Metrics struct {
	registry *prometheus.Registry
	// collectors are what registry holds, for Names.
	collectors []prometheus.Collector

	// HTTPRequests counts answered requests by route pattern, method and status.
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration is the time to answer, by route pattern and method.
	HTTPDuration *prometheus.HistogramVec
	// SumsubCalls counts Sumsub calls by outcome: success, permanent, rate_limited, transient.
	SumsubCalls *prometheus.CounterVec
	// SumsubDuration is a Sumsub call's latency, by outcome.
	SumsubDuration *prometheus.HistogramVec
	// LimiterWait is how long a record waited for a rate-limit permit.
	LimiterWait prometheus.Histogram
	// Records counts records that reached a final state, by outcome.
	Records *prometheus.CounterVec
	// SumsubCircuitState is the Sumsub circuit breaker's state as this
	// process sees it: 0 closed, 1 open.
	SumsubCircuitState prometheus.Gauge
	// SumsubCircuitTransitions counts the transitions this process made, by
	// the state entered (open, closed).
	SumsubCircuitTransitions *prometheus.CounterVec
	// SumsubRateLimit is the requests per second all workers may send
	// (SUMSUB_RATE_LIMIT), for dashboards and alerts to compare with.
	SumsubRateLimit prometheus.Gauge
	// BusinessCalls counts Sumsub calls by business (its id): one series
	// per business that sent records; dashboards show the top few.
	BusinessCalls *prometheus.CounterVec
	// WebhookAttempts counts webhook delivery attempts by result:
	// delivered, failed (retried later) or given_up.
	WebhookAttempts *prometheus.CounterVec
	// Repairs counts what the reconciler mended that Redis had lost, by
	// kind: schedule_rebuilt, batch_put_back, task_refed.
	Repairs *prometheus.CounterVec
}

// New returns the metrics of a process, with Go's runtime and process metrics.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycbatch_http_requests_total", Help: "HTTP requests answered, by route, method and status.",
		}, []string{"route", "method", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kycbatch_http_request_duration_seconds", Help: "Time to answer an HTTP request, by route and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
		SumsubCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycbatch_sumsub_calls_total", Help: "Sumsub calls, by outcome (success, permanent, rate_limited, transient).",
		}, []string{"outcome"}),
		SumsubDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kycbatch_sumsub_call_duration_seconds", Help: "Latency of Sumsub calls, by outcome.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		LimiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kycbatch_rate_limiter_wait_seconds", Help: "Time a record waited for a Sumsub rate-limit permit.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2},
		}),
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycbatch_records_processed_total", Help: "Records that reached a final state, by outcome.",
		}, []string{"outcome"}),
		SumsubCircuitState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kycbatch_sumsub_circuit_state", Help: "The Sumsub circuit breaker, shared by every worker, as this process sees it: 0 closed, 1 open (no record is sent).",
		}),
		SumsubCircuitTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kycbatch_sumsub_circuit_transitions_total", Help: "Transitions of the Sumsub circuit breaker made by this process, by the state entered (open, closed).",
		}, []string{"to"}),
	}
	m.SumsubRateLimit = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kycbatch_sumsub_rate_limit", Help: "Sumsub requests per second allowed to all workers together (SUMSUB_RATE_LIMIT).",
	})
	m.BusinessCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kycbatch_sumsub_calls_by_business_total", Help: "Sumsub calls, by business id: each business's share of the rate.",
	}, []string{"business"})
	m.WebhookAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kycbatch_webhook_delivery_attempts_total", Help: "Webhook delivery attempts, by result (delivered, failed: retried later, given_up).",
	}, []string{"result"})
	m.Repairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kycbatch_reconciler_repairs_total", Help: "Work Redis had lost that the reconciler put back, by kind (schedule_rebuilt, batch_put_back, task_refed).",
	}, []string{"kind"})
	m.register(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequests, m.HTTPDuration, m.SumsubCalls, m.SumsubDuration, m.LimiterWait, m.Records,
		m.SumsubCircuitState, m.SumsubCircuitTransitions, m.SumsubRateLimit, m.BusinessCalls, m.WebhookAttempts, m.Repairs,
	)
	return m
}

// Start makes the series of each label value exist at 0, so that rules
// and panels see a counter before its first event (increase() cannot see
// the first increment of a series that did not exist). The process that
// counts calls it with the label's bounded set of values.
func Start(vec *prometheus.CounterVec, values ...string) {
	for _, v := range values {
		vec.WithLabelValues(v)
	}
}

// Backlog is the work waiting for Sumsub.
type Backlog struct {
	// Waiting counts the records in the fair schedule, not yet fed into
	// the queue; ByBusiness the largest businesses' part of them.
	Waiting    int
	ByBusiness map[string]int
	// Retry counts the record tasks waiting out a retry (or a snooze).
	Retry int
}

// topBusinesses is how many businesses kycbatch_records_waiting_by_business
// names: the largest backlogs, never a series for every business.
const topBusinesses = 10

var (
	waitingDesc = prometheus.NewDesc("kycbatch_records_waiting",
		"Records waiting in the fair schedule to be fed into the sumsub queue (the backlog).", nil, nil)
	waitingByBusinessDesc = prometheus.NewDesc("kycbatch_records_waiting_by_business",
		"Records waiting in the fair schedule, for the businesses with the largest backlogs (at most 10).", []string{"business"}, nil)
	retryDesc = prometheus.NewDesc("kycbatch_records_in_retry",
		"Record tasks of the sumsub queue waiting out a retry (a Sumsub 5xx, 429 or timeout) or a snooze (queue paused, circuit open).", nil, nil)
)

// WatchBacklog adds the backlog's gauges, read at each scrape.
func (m *Metrics) WatchBacklog(read func(context.Context) (Backlog, error), logger *slog.Logger) {
	m.register(&backlogCollector{read: read, logger: logger})
}

// backlogCollector reports the backlog when scraped.
type backlogCollector struct {
	read   func(context.Context) (Backlog, error)
	logger *slog.Logger
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- waitingDesc
	ch <- waitingByBusinessDesc
	ch <- retryDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.read(ctx)
	if err != nil {
		c.logger.Warn("read the backlog for metrics", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(b.Waiting))
	ch <- prometheus.MustNewConstMetric(retryDesc, prometheus.GaugeValue, float64(b.Retry))
	businesses := make([]string, 0, len(b.ByBusiness))
	for id := range b.ByBusiness {
		businesses = append(businesses, id)
	}
	slices.SortFunc(businesses, func(x, y string) int {
		return cmp.Or(cmp.Compare(b.ByBusiness[y], b.ByBusiness[x]), cmp.Compare(x, y))
	})
	for _, id := range businesses[:min(len(businesses), topBusinesses)] {
		ch <- prometheus.MustNewConstMetric(waitingByBusinessDesc, prometheus.GaugeValue, float64(b.ByBusiness[id]), id)
	}
}

// WatchQueues adds the sizes and task outcomes of the Asynq queues (asynq's collector).
func (m *Metrics) WatchQueues(inspector *asynq.Inspector) {
	m.register(asynqmetrics.NewQueueMetricsCollector(inspector))
}

// WatchBatches adds the number of batches by status, counted at each scrape
// (ingest.CountByStatus: the batches are ingest's).
func (m *Metrics) WatchBatches(count func(context.Context) (map[string]int, error), logger *slog.Logger) {
	m.register(&batchCollector{count: count, logger: logger})
}

var dependencyDesc = prometheus.NewDesc("kycbatch_dependency_up",
	"Whether a dependency (postgres, redis, s3) answered this process's check at the scrape: 1 yes, 0 no; /readyz fails on any 0.",
	[]string{"dependency"}, nil)

// WatchDependencies adds kycbatch_dependency_up, from check at each scrape
// (the checks of /readyz: an error is a dependency down). Processes that
// share one Metrics (the dev server) register it once: the first check is kept.
func (m *Metrics) WatchDependencies(check func(context.Context) map[string]error) {
	err := m.registry.Register(dependencyCollector(check))
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return
	}
	if err != nil {
		panic(err)
	}
	m.collectors = append(m.collectors, dependencyCollector(check))
}

func (m *Metrics) register(cs ...prometheus.Collector) {
	m.registry.MustRegister(cs...)
	m.collectors = append(m.collectors, cs...)
}

// fqName is a Desc's metric name in its String form.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the name of every metric these collectors export (a
// histogram's base name: its series add _bucket, _sum and _count), for
// checks of the dashboards and alert rules that query them.
func (m *Metrics) Names() []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range m.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		if match := fqName.FindStringSubmatch(d.String()); match != nil {
			names = append(names, match[1])
		}
	}
	return names
}

// dependencyCollector reports each dependency's check at the scrape.
type dependencyCollector func(context.Context) map[string]error

func (c dependencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dependencyDesc }

func (c dependencyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for dep, err := range c(ctx) {
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(dependencyDesc, prometheus.GaugeValue, up, dep)
	}
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

var batchesDesc = prometheus.NewDesc("kycbatch_batches", "Batches by status.", []string{"status"}, nil)

// batchCollector counts batches by status when scraped.
type batchCollector struct {
	count  func(context.Context) (map[string]int, error)
	logger *slog.Logger
}

func (c *batchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- batchesDesc }

func (c *batchCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		c.logger.Warn("count batches for metrics", "error", err)
		return
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(batchesDesc, prometheus.GaugeValue, float64(n), status)
	}
}
