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
	Notify(ctx context.Context, business uuid.UUID, eventType, subject string, data any)
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
// Failures are logged: the batch's state is committed whatever happens here,
// and the notifier's recovery raises the event later.
func (p *Processor) notifyBatch(ctx context.Context, id uuid.UUID, eventType string) {
	if p.notifier == nil {
		return
	}
	business, body, err := p.BatchEvent(ctx, id.String())
	if err != nil {
		p.logger.ErrorContext(ctx, "read batch for its webhook event; the reconciler will raise it", "event_type", eventType, "error", err)
		return
	}
	p.notifier.Notify(ctx, business, eventType, id.String(), body)
}

// BatchEvent returns the business of batch subject and its status body, the
// data of the batch's events.
func (p *Processor) BatchEvent(ctx context.Context, subject string) (uuid.UUID, any, error) {
	id, err := uuid.Parse(subject)
	if err != nil {
		return uuid.Nil, nil, err
	}
	b, err := p.store.byID(ctx, id)
	if err != nil {
		return uuid.Nil, nil, err
	}
	body, err := statusBody(ctx, p.store, b, 0)
	return b.BusinessID, body, err
}
