package reports

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Notifier tells a business that one of its reports is built or failed;
// *webhook.Notifier is one. It exists so that reports raise events without
// knowing how they are stored or delivered. Notify must not fail the
// caller: the report's state is committed already.
type Notifier interface {
	Notify(ctx context.Context, business uuid.UUID, eventType, subject string, data any)
}

// Event types of reports, as webhook endpoints subscribe to them.
const (
	EventReportReady  = "report.ready"
	EventReportFailed = "report.failed"
)

// WithNotifier makes the builder raise an event when a report ends, with the
// download answer's data (a link signed by links, valid for linkTTL); it returns b.
func (b *Builder) WithNotifier(n Notifier, links Linker, linkTTL time.Duration) *Builder {
	b.notifier, b.links, b.linkTTL = n, links, linkTTL
	return b
}

// notify raises eventType for report id. Failures are logged only: the
// notifier's recovery raises the event later.
func (b *Builder) notify(ctx context.Context, id, eventType string) {
	if b.notifier == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	business, data, err := b.ReportEvent(ctx, id)
	if err != nil {
		b.logger.ErrorContext(ctx, "read report for its webhook event; the reconciler will raise it", "event_type", eventType, "error", err)
		return
	}
	b.notifier.Notify(ctx, business, eventType, id, data)
}

// ReportEvent returns the business of report subject and the download
// answer's data, the data of the report's events.
func (b *Builder) ReportEvent(ctx context.Context, subject string) (uuid.UUID, any, error) {
	r, err := b.store.byID(ctx, subject)
	if err != nil {
		return uuid.Nil, nil, err
	}
	data, err := downloadData(ctx, b.store, b.links, b.linkTTL, r)
	return r.BusinessID, data, err
}
