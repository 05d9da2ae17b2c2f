package ingest

import (
	"context"

	"github.com/google/uuid"
)

// Notifier tells a business that one of its batches finished;
// *webhook.Notifier is one. It exists so that ingest raises events without
// knowing how they are stored or delivered. Notify must not fail the caller:
// the batch's state change is committed already.
type Notifier interface {
	Notify(ctx context.Context, business uuid.UUID, eventType string, data any)
}

// Event types of batches, as webhook endpoints subscribe to them.
const (
	EventBatchCompleted = "batch.completed"
	EventBatchFailed    = "batch.failed"
	EventBatchCancelled = "batch.cancelled"
)

// WithNotifier makes the handler raise an event when a batch is cancelled; it returns h.
func (h *Handler) WithNotifier(n Notifier) *Handler {
	h.notifier = n
	return h
}

// WithNotifier makes the processor raise an event when a batch completes; it returns p.
func (p *Processor) WithNotifier(n Notifier) *Processor {
	p.notifier = n
	return p
}

// notifyBatch raises eventType for batch id with the batch's status body.
// Failures are logged: the batch's state is committed whatever happens here.
func (p *Processor) notifyBatch(ctx context.Context, id uuid.UUID, eventType string) {
	if p.notifier == nil {
		return
	}
	b, err := p.store.byID(ctx, id)
	if err != nil {
		p.logger.ErrorContext(ctx, "read batch for its webhook event; the event is lost", "event_type", eventType, "error", err)
		return
	}
	body, err := statusBody(ctx, p.store, b, 0)
	if err != nil {
		p.logger.ErrorContext(ctx, "read batch for its webhook event; the event is lost", "event_type", eventType, "error", err)
		return
	}
	p.notifier.Notify(ctx, b.BusinessID, eventType, body)
}
