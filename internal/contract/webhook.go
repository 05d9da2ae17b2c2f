package contract

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/reports"
	"github.com/kycbatch/kycbatch/internal/webhook"
)

// Endpoint is a webhook endpoint as the API shows it; Secret only in the
// answer to its creation.
type Endpoint struct {
	ID        uuid.UUID    `json:"id"`
	URL       string       `json:"url"`
	Events    []event.Type `json:"events"`
	Secret    string       `json:"secret,omitempty"`
	CreatedAt Time         `json:"createdAt"`
}

// EndpointOf maps an endpoint, with its secret when it has one (at creation).
func EndpointOf(e webhook.Endpoint) Endpoint {
	events := e.Events
	if events == nil {
		events = []event.Type{}
	}
	return Endpoint{ID: e.ID, URL: e.URL, Events: events, Secret: e.Secret, CreatedAt: Time(e.CreatedAt)}
}

// Endpoints is the body of GET /webhook-endpoints.
type Endpoints struct {
	Endpoints []Endpoint `json:"endpoints"`
}

// EndpointsOf maps a business's endpoints.
func EndpointsOf(list []webhook.Endpoint) Endpoints {
	out := Endpoints{Endpoints: make([]Endpoint, len(list))}
	for i, e := range list {
		out.Endpoints[i] = EndpointOf(e)
	}
	return out
}

// Attempt is one POST of an event to an endpoint.
type Attempt struct {
	ID           uuid.UUID `json:"id"`
	EventID      string    `json:"eventId"`
	EventType    string    `json:"eventType"`
	Attempt      int       `json:"attempt"`
	Status       string    `json:"status"`
	ResponseCode *int      `json:"responseCode"`
	LatencyMs    int       `json:"latencyMs"`
	Error        *string   `json:"error"`
	CreatedAt    Time      `json:"createdAt"`
}

// Deliveries is the body of GET /webhook-endpoints/{id}/deliveries.
type Deliveries struct {
	Deliveries []Attempt `json:"deliveries"`
}

// DeliveriesOf maps an endpoint's latest attempts.
func DeliveriesOf(list []webhook.Attempt) Deliveries {
	out := Deliveries{Deliveries: make([]Attempt, len(list))}
	for i, a := range list {
		out.Deliveries[i] = Attempt{
			ID: a.ID, EventID: a.EventID, EventType: a.EventType, Attempt: a.Attempt, Status: a.Status,
			ResponseCode: a.ResponseCode, LatencyMs: a.LatencyMs, Error: a.Error, CreatedAt: Time(a.CreatedAt),
		}
	}
	return out
}

// eventBody is the JSON body POSTed to an endpoint.
type eventBody struct {
	Type      event.Type `json:"type"`
	ID        string     `json:"id"`
	Timestamp Time       `json:"timestamp"`
	Data      any        `json:"data"`
}

// Events renders the bodies of webhook events: a batch's event carries the
// batch's status body, a report's the download answer's data (its link
// signed now), exactly as the API answers them. It is the webhook
// dispatcher's Renderer.
type Events struct {
	Batches *ingest.Service
	Reports *reports.Service
}

// Body renders ev's body; an error wrapping webhook.ErrSubjectGone when its
// batch or report no longer exists.
func (e Events) Body(ctx context.Context, ev event.Event) ([]byte, error) {
	var data any
	switch ev.Type {
	case event.BatchCompleted, event.BatchCancelled:
		id, err := uuid.Parse(ev.Subject)
		if err != nil {
			return nil, fmt.Errorf("%w: batch id %q: %v", webhook.ErrSubjectGone, ev.Subject, err)
		}
		st, err := e.Batches.StatusByID(ctx, id)
		if errors.Is(err, ingest.ErrBatchNotFound) {
			return nil, fmt.Errorf("%w: %w", webhook.ErrSubjectGone, err)
		}
		if err != nil {
			return nil, err
		}
		data = BatchStatusOf(st)
	case event.ReportReady, event.ReportFailed:
		d, err := e.Reports.DownloadByID(ctx, ev.Subject)
		if errors.Is(err, reports.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", webhook.ErrSubjectGone, err)
		}
		if err != nil {
			return nil, err
		}
		data = DownloadOf(d)
	default:
		return nil, fmt.Errorf("%w: unknown event type %q", webhook.ErrSubjectGone, ev.Type)
	}
	return Marshal(eventBody{Type: ev.Type, ID: ev.ID, Timestamp: Time(ev.CreatedAt), Data: data})
}
