// Package tracing sets up the OpenTelemetry traces of a kycbatch process and
// carries a trace where a context does not travel by itself: across Asynq
// tasks (their headers) and from an upload to its records, which the workers
// send later and not as tasks (the batch's row keeps the upload's
// traceparent). It also builds the contrib instrumentation of Echo, pgx and
// net/http, so that the rest of the code asks one package whether tracing
// is on.
//
// Tracing is off unless an OTLP endpoint is configured: then nothing is
// installed (OpenTelemetry's global provider stays its no-op one, no
// exporter runs) and every helper here returns what it was given, or
// nothing, without allocating.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Config says where spans go. The exporter reads the other standard
// variables itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE…), the SDK OTEL_TRACES_SAMPLER and OTEL_BSP_*, and the
// resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
type Config struct {
	// Endpoint is the OTLP/HTTP URL spans are sent to:
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
	// OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended (the
	// specification's rule). Empty: tracing is off.
	Endpoint string
}

// Enabled reports whether the configuration turns tracing on.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// provider is the SDK provider Start installed; nil while tracing is off.
// The helpers of this package read it, so that a process that traces
// nothing pays one atomic load where a span could start.
var provider atomic.Pointer[sdktrace.TracerProvider]

// Enabled reports whether this process traces: Start (or Install) set a provider up.
func Enabled() bool { return provider.Load() != nil }

// Start sets tracing up for the process named service (kycbatch-api,
// kycbatch-worker, kycbatch-devserver; OTEL_SERVICE_NAME overrides it): an
// OTLP/HTTP exporter to cfg.Endpoint behind a batching processor, the W3C
// TraceContext and Baggage propagators, and the resource of the SDK's
// environment detection. Errors of the exporter are logged. shutdown
// flushes the spans not yet sent and stops; call it as the process stops.
// When cfg is off, Start changes nothing.
func Start(ctx context.Context, cfg Config, service string, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	if !cfg.Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return Install(ctx, exporter, service, logger)
}

// Install sets tracing up as Start does, with spans going to exporter:
// Start's OTLP exporter, or a test's in-memory one. Every span passes the
// redaction of redact.go first.
func Install(ctx context.Context, exporter sdktrace.SpanExporter, service string, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: after the default, so they win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(redacting{exporter}),
		sdktrace.WithResource(res),
	)
	prevProvider, prevPropagator, prevHandler := otel.GetTracerProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("traces", "error", err)
	}))
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetTracerProvider(tp)
	provider.Store(tp)
	return func(ctx context.Context) error {
		provider.CompareAndSwap(tp, nil)
		err := tp.Shutdown(ctx)
		otel.SetTracerProvider(prevProvider)
		otel.SetTextMapPropagator(prevPropagator)
		otel.SetErrorHandler(prevHandler)
		if err != nil {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	}, nil
}
