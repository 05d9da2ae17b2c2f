package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/kycbatch/kycbatch/internal/app"
	"github.com/kycbatch/kycbatch/internal/config"
	"github.com/kycbatch/kycbatch/internal/logging"
	"github.com/kycbatch/kycbatch/internal/testing/apitest"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// TestOffWithoutEndpoint runs first (the tests of this package are not
// parallel): with no OTEL_ variable, nothing is installed and every helper
// gives back what it was given.
func TestOffWithoutEndpoint(t *testing.T) {
	cfg, err := config.LoadAPI(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.Enabled() {
		t.Fatalf("tracing on without an endpoint: %+v", cfg.Tracing)
	}
	stop, err := app.StartTracing(context.Background(), cfg.Tracing, "kycbatch-api", logging.New(&strings.Builder{}, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if tracing.Enabled() {
		t.Error("tracing.Enabled() without an endpoint")
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Error("the global tracer provider is the SDK's without an endpoint")
	}
	if _, span := tracing.Tracer().Start(context.Background(), "x"); span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a span is recorded without an endpoint")
	}
	if tracing.Echo() != nil {
		t.Error("Echo middleware without an endpoint")
	}
	if rt := tracing.Transport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Errorf("Transport wraps without an endpoint: %T", rt)
	}
	if task := tracing.NewTask(context.Background(), "t", nil); len(task.Headers()) != 0 {
		t.Errorf("task headers without an endpoint: %v", task.Headers())
	}
	if tp := tracing.Traceparent(context.Background()); tp != "" {
		t.Errorf("Traceparent without an endpoint: %q", tp)
	}
}

func TestEndpointVariables(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/traces"}, "https://b/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, ""},
	} {
		cfg, err := config.LoadAPI(func(k string) string { return tc.env[k] })
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if cfg.Tracing.Endpoint != tc.want {
			t.Errorf("%v: endpoint %q, want %q", tc.env, cfg.Tracing.Endpoint, tc.want)
		}
	}
	for _, env := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		if _, err := config.LoadAPI(func(k string) string { return env[k] }); err == nil {
			t.Errorf("%v: no error", env)
		}
	}
}

// kept is the in-memory exporter without its Shutdown, which would forget
// the spans: the test reads them after the provider has flushed.
type kept struct{ *tracetest.InMemoryExporter }

func (kept) Shutdown(context.Context) error { return nil }

// TestOneTracePerUpload runs a batch and its report through the real API,
// a worker and the Sumsub simulator, and checks the spans' links and that
// no span says a secret.
func TestOneTracePerUpload(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	shutdown, err := tracing.Install(context.Background(), kept{exporter}, "kycbatch-test", logging.New(&strings.Builder{}, 0))
	if err != nil {
		t.Fatal(err)
	}
	flushed := false
	flush := func() {
		if !flushed {
			flushed = true
			if err := shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
	defer flush()

	e := apitest.New(t, apitest.Options{SumsubRate: 20})
	stopWorker := e.StartWorker(t, 5*time.Second)
	key, _ := e.Business(t)
	// A webhook endpoint whose path and query are secrets, as some are.
	delivered := make(chan struct{}, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case delivered <- struct{}{}:
		default:
		}
	}))
	defer hook.Close()
	hookURL := hook.URL + "/hooks/T0SECRETPATH/B0SECRET?token=s3cr3tquery"
	reg := e.Call(t, http.MethodPost, "/webhook-endpoints", key, map[string]any{"url": hookURL, "events": []string{"batch.completed"}})
	if reg.Status != http.StatusCreated {
		t.Fatalf("register webhook endpoint: %d %s", reg.Status, reg.Body)
	}
	hookSecret, _ := reg.JSON(t)["secret"].(string)
	const n = 4
	csv := apitest.CSVFile("trace", e.Entities(t, key, n))
	// A client's own trace context is not ours to continue: the upload
	// stays the root, in a trace of its own, and its baggage goes nowhere.
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	up := e.Do(t, e.UploadRequest(t, key, uuid.NewString(), csv, map[string]string{
		"traceparent": "00-" + clientTrace + "-00f067aa0ba902b7-01", "baggage": "client-secret=sent-on",
	}))
	if up.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", up.Status, up.Body)
	}
	batchID := up.JSON(t)["batchId"].(string)
	e.WaitBatch(t, key, batchID, 20*time.Second)
	select {
	case <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatal("batch.completed not delivered")
	}
	r := e.Call(t, http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate", key, map[string]string{"client_id": batchID})
	reportID := r.JSON(t)["data"].(map[string]any)["client_id"].(string)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		d := e.Call(t, http.MethodGet, "/api/v1/stamper-v2/bulk-usage-report/download?client_id="+reportID, key, nil).JSON(t)
		if d["data"].(map[string]any)["status"] == "success" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report not built: %v", d)
		}
	}
	stopWorker() // every record's and task's span has ended
	flush()
	spans := exporter.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}

	// rootOf walks s's parents up to the root, failing on a parent that
	// is not among the spans, or one of another trace.
	rootOf := func(s tracetest.SpanStub) tracetest.SpanStub {
		t.Helper()
		for s.Parent.IsValid() {
			p, ok := byID[s.Parent.SpanID()]
			if !ok {
				t.Fatalf("span %q: parent %s not exported", s.Name, s.Parent.SpanID())
			}
			if p.SpanContext.TraceID() != s.SpanContext.TraceID() {
				t.Fatalf("span %q and its parent %q are in different traces", s.Name, p.Name)
			}
			s = p
		}
		return s
	}
	server := func(method, route string) tracetest.SpanStub {
		t.Helper()
		var found []tracetest.SpanStub
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer && attr(s.Attributes, "http.route") == route && attr(s.Attributes, "http.request.method") == method {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d server spans of %s %s, want 1", len(found), method, route)
		}
		return found[0]
	}

	// The upload: its server span is the root of the batch's trace.
	upload := server(http.MethodPost, "/entity/kyc/import/batch")
	if upload.Parent.IsValid() || upload.SpanContext.TraceID().String() == clientTrace {
		t.Errorf("the upload's span continues the client's trace: parent %v, trace %s", upload.Parent, upload.SpanContext.TraceID())
	}
	var dispatch, records, calls []tracetest.SpanStub
	for _, s := range spans {
		switch {
		case s.Name == "ingest.dispatch_batch":
			dispatch = append(dispatch, s)
		case s.Name == "record:import" && attr(s.Attributes, "kycbatch.batch_id") == batchID && attr(s.Attributes, "kycbatch.sumsub_outcome") != "":
			// A record task's run that called Sumsub (a run snoozed
			// calls nothing).
			records = append(records, s)
		}
	}
	if len(dispatch) != 1 || dispatch[0].Parent.SpanID() != upload.SpanContext.SpanID() {
		t.Fatalf("dispatch spans %d, want 1 child of the upload's", len(dispatch))
	}
	if len(records) != n {
		t.Fatalf("%d record spans, want %d", len(records), n)
	}
	recordIDs := map[trace.SpanID]bool{}
	for _, rec := range records {
		recordIDs[rec.SpanContext.SpanID()] = true
		if rec.Parent.SpanID() != dispatch[0].SpanContext.SpanID() || !rec.Parent.IsRemote() {
			t.Errorf("record %s: parent %s, want the dispatch %s (remote)", attr(rec.Attributes, "kycbatch.row"), rec.Parent.SpanID(), dispatch[0].SpanContext.SpanID())
		}
		if root := rootOf(rec); root.SpanContext.SpanID() != upload.SpanContext.SpanID() {
			t.Errorf("record %s: root %q, want the upload's", attr(rec.Attributes, "kycbatch.row"), root.Name)
		}
	}
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient && strings.Contains(attr(s.Attributes, "url.full"), "/resources/api/reusableIdentity/reuse") {
			calls = append(calls, s)
			if !recordIDs[s.Parent.SpanID()] {
				t.Errorf("Sumsub call %s: parent is no record's span", s.SpanContext.SpanID())
			}
			if rootOf(s).SpanContext.SpanID() != upload.SpanContext.SpanID() {
				t.Errorf("Sumsub call %s: not in the upload's trace", s.SpanContext.SpanID())
			}
		}
	}
	if len(calls) != n {
		t.Errorf("%d Sumsub client spans, want %d", len(calls), n)
	}

	// The report: its build task's span is a child of the request's.
	initiate := server(http.MethodPost, "/api/v1/stamper-v2/bulk-usage-report/initiate")
	if initiate.Parent.IsValid() {
		t.Errorf("the report request's span has a parent")
	}
	var builds int
	for _, s := range spans {
		if s.Name == "report:build" && rootOf(s).SpanContext.SpanID() == initiate.SpanContext.SpanID() {
			builds++
			if s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("report:build span kind %v", s.SpanKind)
			}
		}
	}
	if builds == 0 {
		t.Error("no report:build span in the report request's trace")
	}

	// The batch.completed event: dispatched and delivered in the upload's
	// trace, the delivery's URL only its scheme and host.
	var deliveries int
	for _, s := range spans {
		if s.Name == "webhook:deliver" && rootOf(s).SpanContext.SpanID() == upload.SpanContext.SpanID() {
			deliveries++
		}
		if s.SpanKind == trace.SpanKindClient && strings.HasPrefix(attr(s.Attributes, "url.full"), hook.URL) {
			if got := attr(s.Attributes, "url.full"); got != hook.URL+"/" {
				t.Errorf("delivery's url.full %q, want %q", got, hook.URL+"/")
			}
		}
	}
	if deliveries == 0 {
		t.Error("no webhook:deliver span in the upload's trace")
	}

	// No span says a secret: the share tokens, the API key, Sumsub's app
	// token and secret.
	secrets := []string{key, e.Worker.Sumsub.AppToken, e.Worker.Sumsub.SecretKey, "SECRETPATH", "s3cr3tquery"}
	if hookSecret != "" {
		secrets = append(secrets, hookSecret)
	}
	for row := 2; row < n+2; row++ {
		secrets = append(secrets, apitest.Token("trace", row))
	}
	for _, s := range spans {
		texts := []string{s.Name, s.Status.Description}
		for _, kv := range s.Attributes {
			texts = append(texts, string(kv.Key)+"="+kv.Value.String())
		}
		for _, ev := range s.Events {
			texts = append(texts, ev.Name)
			for _, kv := range ev.Attributes {
				texts = append(texts, string(kv.Key)+"="+kv.Value.String())
			}
		}
		if s.Resource != nil {
			for _, kv := range s.Resource.Attributes() {
				texts = append(texts, kv.Value.String())
			}
		}
		for _, text := range texts {
			for _, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("span %q says a secret: %s", s.Name, text)
				}
			}
			if strings.Contains(text, "shareToken=") && !strings.Contains(text, "shareToken=REDACTED") {
				t.Errorf("span %q has a share token parameter: %s", s.Name, text)
			}
		}
	}
	t.Logf("%d spans; upload trace %s", len(spans), upload.SpanContext.TraceID())
	if testing.Verbose() {
		for _, s := range spans {
			if s.SpanContext.TraceID() == upload.SpanContext.TraceID() && s.Name != "" {
				fmt.Printf("  %s %s parent=%s\n", s.SpanContext.SpanID(), s.Name, s.Parent.SpanID())
			}
		}
	}
}

// attr is the value of the attribute key, "" when absent.
func attr(attrs []attribute.KeyValue, key string) string {
	for _, kv := range attrs {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestOTLPExport starts tracing as the binaries do, on an endpoint that
// records what it is sent: the spans arrive over OTLP/HTTP at /v1/traces
// by the time stop returns.
func TestOTLPExport(t *testing.T) {
	got := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type")
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	cfg, err := config.LoadWorker(func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "SUMSUB_APP_TOKEN": "t", "SUMSUB_SECRET_KEY": "s"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := app.StartTracing(context.Background(), cfg.Tracing, "kycbatch-worker", logging.New(&strings.Builder{}, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.Enabled() {
		t.Fatal("tracing off with an endpoint")
	}
	_, span := tracing.Tracer().Start(context.Background(), "exported")
	span.End()
	stop()
	if tracing.Enabled() {
		t.Error("tracing still on after stop")
	}
	select {
	case req := <-got:
		if want := "POST /v1/traces application/x-protobuf"; req != want {
			t.Errorf("collector got %q, want %q", req, want)
		}
	default:
		t.Error("stop returned before the span was exported")
	}
}
