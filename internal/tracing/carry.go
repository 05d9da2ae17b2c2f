package tracing

import (
	"context"
	"net/http"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	//lint:ignore SA1019 its successor, github.com/labstack/echo-opentelemetry, is not served by our module proxy
	"go.opentelemetry.io/contrib/instrumentation/github.com/labstack/echo/otelecho"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Scope names the spans kycbatch starts itself (records, tasks, dispatch).
const Scope = "github.com/kycbatch/kycbatch"

// Tracer starts kycbatch's own spans (no-op while tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(Scope) }

// Echo returns the middleware that starts a server span for each request
// (otelecho), except on the operations routes, which a scraper or a probe
// calls every few seconds; nil while tracing is off. It records the
// method, route, path, status, client address and user agent: no header
// (no X-API-Key, no Authorization) and no body. A client's traceparent and
// baggage are ignored: the API is public, so a client neither picks our
// trace or sampling nor has its baggage passed on to Sumsub and webhook
// endpoints; each request is a trace's root.
func Echo() echo.MiddlewareFunc {
	if !Enabled() {
		return nil
	}
	ignore := propagation.NewCompositeTextMapPropagator()
	return otelecho.Middleware("", otelecho.WithPropagators(ignore), otelecho.WithSkipper(func(c echo.Context) bool {
		p := c.Request().URL.Path
		return p == "/metrics" || p == "/healthz" || p == "/readyz" || p == "/monitoring" || strings.HasPrefix(p, "/monitoring/")
	}))
}

// Transport returns base with a client span for each request (otelhttp)
// and the trace context sent along; base itself while tracing is off.
// The spans' URLs lose their query on export (redact.go).
func Transport(base http.RoundTripper) http.RoundTripper {
	if !Enabled() {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base)
}

// HostOnlyTransport is Transport for URLs whose path may itself be a
// secret (a business's webhook endpoint, such as a chat service's incoming
// hook): the span's url.full keeps only the scheme and the host.
func HostOnlyTransport(base http.RoundTripper) http.RoundTripper {
	if !Enabled() {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(hostOnly{base})
}

// hostOnly runs inside otelhttp's client span, which recorded the full URL
// as it started, and writes it again with the scheme and host alone.
type hostOnly struct{ next http.RoundTripper }

func (t hostOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("url.full", r.URL.Scheme+"://"+r.URL.Host+"/"))
	}
	return t.next.RoundTrip(r)
}

// NewTask is asynq.NewTask with the trace context of ctx in the task's
// headers, so that the handler's span joins the trace that enqueued it.
func NewTask(ctx context.Context, typename string, payload []byte, opts ...asynq.Option) *asynq.Task {
	if !Enabled() {
		return asynq.NewTask(typename, payload, opts...)
	}
	headers := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, headers)
	if len(headers) == 0 {
		return asynq.NewTask(typename, payload, opts...)
	}
	return asynq.NewTaskWithHeaders(typename, payload, headers, opts...)
}

// TaskSpans is the Asynq middleware that runs each task in a consumer span
// named after its type, a child of the span that enqueued it when its
// headers carry one; next itself while tracing is off.
func TaskSpans(next asynq.Handler) asynq.Handler {
	if !Enabled() {
		return next
	}
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if h := t.Headers(); len(h) > 0 {
			ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(h))
		}
		id, _ := asynq.GetTaskID(ctx)
		retried, _ := asynq.GetRetryCount(ctx)
		ctx, span := Tracer().Start(ctx, t.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "asynq"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.message.id", id),
				attribute.Int("asynq.retry_count", retried),
			))
		defer span.End()
		err := next.ProcessTask(ctx, t)
		if err != nil {
			span.RecordError(err)
		}
		return err
	})
}

// Traceparent is the W3C traceparent of ctx's span, to keep with work that
// continues later in another process (a batch's records); "" while tracing
// is off or ctx has no span.
func Traceparent(ctx context.Context) string {
	if !Enabled() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// NewTaskFrom is asynq.NewTask with the trace context of a Traceparent in
// the task's headers, so that the handler's span joins a trace that began in
// another process (a batch's upload, whose records the workers feed long
// after); no headers when traceparent is empty or tracing is off.
func NewTaskFrom(traceparent, typename string, payload []byte, opts ...asynq.Option) *asynq.Task {
	if !Enabled() || traceparent == "" {
		return asynq.NewTask(typename, payload, opts...)
	}
	return asynq.NewTaskWithHeaders(typename, payload, map[string]string{"traceparent": traceparent}, opts...)
}

// StartFrom starts span name as a child of the span a Traceparent gave, a
// root when traceparent is empty or malformed. While tracing is off it
// starts nothing: ctx comes back with its own (no-op) span.
func StartFrom(ctx context.Context, traceparent, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	if traceparent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	return Tracer().Start(ctx, name, opts...)
}
