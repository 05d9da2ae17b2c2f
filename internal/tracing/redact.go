package tracing

import (
	"context"
	"net/url"
	"regexp"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// redacting passes every span to its exporter with the query of any URL
// attribute left out and any shareToken=… masked wherever it appears (an
// attribute, an event's, the status): otelhttp records a client request's
// full URL, and the Sumsub import's query is the share token. It is the
// last step before spans leave the process, whatever started them.
type redacting struct{ sdktrace.SpanExporter }

func (r redacting) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactedSpan{ReadOnlySpan: s}
	}
	return r.SpanExporter.ExportSpans(ctx, out)
}

// redactedSpan is a span whose texts went through redactAttrs.
type redactedSpan struct{ sdktrace.ReadOnlySpan }

func (s redactedSpan) Attributes() []attribute.KeyValue {
	return redactAttrs(s.ReadOnlySpan.Attributes())
}

func (s redactedSpan) Events() []sdktrace.Event {
	events := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(events))
	for i, e := range events {
		e.Name = redactText(e.Name)
		e.Attributes = redactAttrs(e.Attributes)
		out[i] = e
	}
	return out
}

func (s redactedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	st.Description = redactText(st.Description)
	return st
}

func (s redactedSpan) Name() string { return redactText(s.ReadOnlySpan.Name()) }

// urlKeys are the attributes that hold a whole URL (old and new semantic conventions).
var urlKeys = map[attribute.Key]bool{"url.full": true, "http.url": true}

// dropped are attributes left out altogether: otelecho's echo.error is a
// handler's error text, which may quote a value of the request (a CSV
// field); the status code and the logs say what went wrong.
var dropped = map[attribute.Key]bool{"echo.error": true}

func redactAttrs(attrs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		if dropped[kv.Key] {
			continue
		}
		if kv.Value.Type() == attribute.STRING {
			v := kv.Value.AsString()
			if urlKeys[kv.Key] {
				v = withoutQuery(v)
			}
			kv = kv.Key.String(redactText(v))
		}
		out = append(out, kv)
	}
	return out
}

// withoutQuery is the URL u without its user information and query.
func withoutQuery(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	parsed.User, parsed.RawQuery, parsed.ForceQuery = nil, "", false
	return parsed.String()
}

// shareTokenParam finds a share token in a query string or a message.
var shareTokenParam = regexp.MustCompile(`(?i)(sharetoken=)[^&\s"']*`)

func redactText(s string) string { return shareTokenParam.ReplaceAllString(s, "${1}REDACTED") }
