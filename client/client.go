// Package client is the Go client of the kycbatch HTTP API (see API.md):
// entities, CSV batch uploads and their status and records, usage reports,
// webhook endpoints, and the verification of the webhooks kycbatch sends.
//
// A Client is safe for concurrent use. Every method takes a context; failed
// calls return a *Error for answers of the API (see IsNotFound and friends)
// and a wrapped transport error otherwise. Requests that are safe to repeat
// are retried on 429, 5xx and connection errors with exponential backoff and
// jitter, honouring Retry-After; other 4xx answers are never retried.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the options.
const (
	DefaultRetries      = 3
	DefaultRetryBackoff = 500 * time.Millisecond
	DefaultPollInterval = time.Second
	DefaultUserAgent    = "kycbatch-go-client/1"

	// maxRetryWait caps one wait between attempts, whatever Retry-After or
	// the backoff ask for, so that a call never hangs for minutes.
	maxRetryWait = 30 * time.Second
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
)

// Client calls one kycbatch service with one business's API key.
type Client struct {
	baseURL      string
	apiKey       string
	http         *http.Client
	retries      int
	backoff      time.Duration
	userAgent    string
	pollInterval time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the http.Client requests go through (default: a client
// with a 60 s timeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithRetry sets how many times a failed request is retried (0 disables
// retries) and the first backoff, which doubles at every attempt.
func WithRetry(retries int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(retries, 0), backoff }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// WithPollInterval sets how often WaitBatch and WaitReport poll (default 1 s).
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) { c.pollInterval = d }
}

// New returns a client of the service at baseURL (e.g.
// "https://kyc.example.com") that authenticates with apiKey.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{
		baseURL:      strings.TrimRight(baseURL, "/"),
		apiKey:       apiKey,
		http:         &http.Client{Timeout: 60 * time.Second},
		retries:      DefaultRetries,
		backoff:      DefaultRetryBackoff,
		userAgent:    DefaultUserAgent,
		pollInterval: DefaultPollInterval,
	}
	for _, o := range opts {
		o(c)
	}
	if c.backoff <= 0 {
		c.backoff = DefaultRetryBackoff
	}
	if c.pollInterval <= 0 {
		c.pollInterval = DefaultPollInterval
	}
	return c
}

// request is one API call, which do may send several times.
type request struct {
	method string
	path   string      // with its query, relative to the base URL
	header http.Header // extra headers
	// body is sent with every attempt (with its Content-Length); nil sends
	// none.
	body []byte
	// repeatable says the request may be sent again after a connection
	// error, when the server may have acted on it: GET, DELETE, and uploads
	// carrying an Idempotency-Key.
	repeatable bool
	// noAuth is set for presigned links, which must not see the API key.
	noAuth bool
	absURL bool // path is a whole URL
}

// do sends r, retrying as the package documentation says, and returns the
// successful response (2xx), whose body the caller must close.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := r.path
	if !r.absURL {
		u = c.baseURL + r.path
	}
	for attempt := 0; ; attempt++ {
		res, err := c.send(ctx, r, u)
		// The transport's *url.Error repeats the whole URL, query included,
		// and a presigned link's query is a credential: keep only its cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil || !r.repeatable || attempt >= c.retries {
				return nil, fmt.Errorf("%s %s: %w", r.method, redact(u), err)
			}
			wait = c.backoffFor(attempt)
		case res.StatusCode < 300:
			return res, nil
		default:
			apiErr := readError(res, r.method, redact(u))
			if !retryable(res.StatusCode) || attempt >= c.retries {
				return nil, apiErr
			}
			wait = max(c.backoffFor(attempt), retryAfter(res.Header.Get("Retry-After")))
		}
		t := time.NewTimer(min(wait, maxRetryWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s %s: %w", r.method, redact(u), ctx.Err())
		case <-t.C:
		}
	}
}

// send makes one attempt of r.
func (c *Client) send(ctx context.Context, r request, u string) (*http.Response, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if !r.noAuth {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", c.userAgent)
	}
	return c.http.Do(req)
}

// retryable says whether an answer with this status may succeed later.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// backoffFor is the wait before retry attempt+1: exponential, with jitter
// over its upper half so that many clients do not retry in step.
func (c *Client) backoffFor(attempt int) time.Duration {
	d := c.backoff << min(attempt, 16)
	if d <= 0 || d > maxRetryWait {
		d = maxRetryWait
	}
	return d/2 + rand.N(d/2+1)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); zero
// when absent or invalid.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// redact drops the query of a URL for error messages: a presigned link's
// query is a credential.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	p.RawQuery = ""
	p.User = nil
	return p.String()
}

// getJSON sends a GET and decodes the answer into out.
func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.callJSON(ctx, request{method: http.MethodGet, path: path, repeatable: true}, out)
}

// postJSON sends in as a JSON body and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	r := request{method: http.MethodPost, path: path, header: http.Header{}}
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return err
		}
		r.body = body
		r.header.Set("Content-Type", "application/json")
	}
	return c.callJSON(ctx, r, out)
}

// callJSON sends r and decodes its answer into out (none when out is nil).
func (c *Client) callJSON(ctx context.Context, r request, out any) error {
	res, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if out == nil {
		io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
	}
	return nil
}

// query encodes the non-empty values of kv (name, value, name, value...).
func query(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
