package client

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WebhookEndpoint is a URL the service sends events to.
type WebhookEndpoint struct {
	ID     string   `json:"id"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Secret ("whsec_…") signs the endpoint's webhooks; only
	// CreateWebhookEndpoint returns it. Keep it like a password.
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// WebhookDelivery is one attempt to deliver an event to an endpoint.
type WebhookDelivery struct {
	ID           string    `json:"id"`
	EventID      string    `json:"eventId"`
	EventType    string    `json:"eventType"`
	Attempt      int       `json:"attempt"`
	Status       string    `json:"status"`
	ResponseCode *int      `json:"responseCode"` // nil when no answer came
	LatencyMs    *int64    `json:"latencyMs"`
	Error        *string   `json:"error"`
	CreatedAt    time.Time `json:"createdAt"`
}

// CreateWebhookEndpoint registers url for the given event types (POST
// /webhook-endpoints) and returns the endpoint with its signing secret.
func (c *Client) CreateWebhookEndpoint(ctx context.Context, url string, events []string) (WebhookEndpoint, error) {
	var e WebhookEndpoint
	err := c.postJSON(ctx, "/webhook-endpoints", map[string]any{"url": url, "events": events}, &e)
	return e, err
}

// ListWebhookEndpoints lists the business's endpoints, without their
// secrets (GET /webhook-endpoints).
func (c *Client) ListWebhookEndpoints(ctx context.Context) ([]WebhookEndpoint, error) {
	var body struct {
		Endpoints []WebhookEndpoint `json:"endpoints"`
	}
	err := c.getJSON(ctx, "/webhook-endpoints", &body)
	return body.Endpoints, err
}

// DeleteWebhookEndpoint removes an endpoint (DELETE /webhook-endpoints/{id}).
func (c *Client) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	return c.callJSON(ctx, request{method: http.MethodDelete, path: "/webhook-endpoints/" + url.PathEscape(id), repeatable: true}, nil)
}

// ListWebhookDeliveries lists an endpoint's delivery attempts (GET
// /webhook-endpoints/{id}/deliveries).
func (c *Client) ListWebhookDeliveries(ctx context.Context, endpointID string) ([]WebhookDelivery, error) {
	var body struct {
		Deliveries []WebhookDelivery `json:"deliveries"`
	}
	err := c.getJSON(ctx, "/webhook-endpoints/"+url.PathEscape(endpointID)+"/deliveries", &body)
	return body.Deliveries, err
}

// Webhook headers of the Standard Webhooks specification.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// DefaultWebhookTolerance is how far a webhook's timestamp may be from now
// when VerifyWebhook is given no tolerance.
const DefaultWebhookTolerance = 5 * time.Minute

// Errors of VerifyWebhook, for errors.Is.
var (
	ErrWebhookSecret    = errors.New("webhook secret is not whsec_<base64>")
	ErrWebhookHeaders   = errors.New("webhook headers missing")
	ErrWebhookTimestamp = errors.New("webhook timestamp outside tolerance")
	ErrWebhookSignature = errors.New("no matching webhook signature")
)

// secretPrefix starts every webhook secret.
const secretPrefix = "whsec_"

// webhookKey decodes a "whsec_<base64>" secret.
func webhookKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok || b64 == "" {
		return nil, ErrWebhookSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, ErrWebhookSecret
	}
	return key, nil
}

// sign is the base64 HMAC-SHA256 of "id.timestamp.body".
func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignWebhook returns the webhook-signature header value ("v1,<base64>") of
// a webhook with this id, timestamp (in whole seconds) and body, per the
// Standard Webhooks specification (https://www.standardwebhooks.com).
// Senders set the headers webhook-id (id), webhook-timestamp (ts in Unix
// seconds) and webhook-signature (this value).
func SignWebhook(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + sign(key, id, ts.Unix(), body), nil
}

// VerifyWebhook checks a received webhook per the Standard Webhooks
// specification: one of the space-separated "v1,<base64>" signatures of the
// webhook-signature header must be the HMAC-SHA256, under secret
// ("whsec_<base64>"), of "webhook-id.webhook-timestamp.body" (compared in
// constant time), and the timestamp must be within tolerance of now
// (DefaultWebhookTolerance when tolerance is 0), which refuses replays.
// body must be the raw request body, as received.
func VerifyWebhook(secret string, header http.Header, body []byte, tolerance time.Duration) error {
	return verifyWebhook(secret, header, body, tolerance, time.Now())
}

func verifyWebhook(secret string, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := webhookKey(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := header.Get(HeaderWebhookID), header.Get(HeaderWebhookTimestamp), header.Get(HeaderWebhookSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrWebhookHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrWebhookTimestamp, tsText)
	}
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrWebhookTimestamp
	}
	want := []byte(sign(key, id, ts, body))
	for s := range strings.FieldsSeq(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrWebhookSignature
}
