// Package sumsub is kycbatch's client of the Sumsub API: it imports
// applicants from Reusable KYC share tokens and reads their review status,
// signing every request and classifying every answer into one *Error, so
// that the import tasks decide between failing a record and retrying it.
// Its fake server, for tests and the dev server, is package sumsubsim.
package sumsub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycbatch/kycbatch/internal/tracing"
)

// Defaults of Config.
const (
	DefaultBaseURL = "https://api.sumsub.com"
	DefaultTimeout = 10 * time.Second
)

// maxBody bounds what we read of an answer: Sumsub's are a few kilobytes, and
// a misbehaving server must not make a worker allocate without limit.
const maxBody = 1 << 20

const userAgent = "kycbatch/1"

// Config of the client.
type Config struct {
	// BaseURL is Sumsub's API root, or the simulator's; DefaultBaseURL when empty.
	BaseURL string
	// AppToken is sent as X-App-Token. It is a credential: never log it.
	AppToken string
	// SecretKey signs every request. It is a secret: it never appears in
	// logs or errors.
	SecretKey string
	// Timeout bounds one request, answer included; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient carries the requests; a plain client when nil. The client
	// uses a copy that does not follow redirects, since a redirect would
	// carry X-App-Token to wherever it points.
	HTTPClient *http.Client
	// Now stamps requests and reads Retry-After dates; time.Now when nil.
	// Tests set it to check the server's tolerance of clock skew.
	Now func() time.Time
}

// Client calls the Sumsub API. It is safe for concurrent use.
type Client struct {
	baseURL   string
	appToken  string
	secretKey string
	timeout   time.Duration
	hc        *http.Client
	now       func() time.Time
}

// New returns a client for cfg, with the defaults of Config filled in.
func New(cfg Config) *Client {
	c := &Client{
		baseURL:   strings.TrimSuffix(cfg.BaseURL, "/"),
		appToken:  cfg.AppToken,
		secretKey: cfg.SecretKey,
		timeout:   cfg.Timeout,
		now:       cfg.Now,
	}
	if c.baseURL == "" {
		c.baseURL = DefaultBaseURL
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	// Connections to Sumsub are kept for every task that may be calling at
	// once: with the default two idle connections per host, most calls of a
	// busy worker would dial first, and a dial between the rate-limit permit
	// and the request delays it past the limiter's margin (a 429).
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = maxIdleConns
	hc := &http.Client{Transport: transport}
	if cfg.HTTPClient != nil {
		copied := *cfg.HTTPClient
		hc = &copied
	}
	// A client span per request while tracing is on; its URL leaves out the
	// query, which is the share token.
	hc.Transport = tracing.Transport(hc.Transport)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = hc
	return c
}

// maxIdleConns is how many idle connections to Sumsub a client keeps.
const maxIdleConns = 128

// Applicant is the applicant a share token was imported as, on our side.
type Applicant struct {
	ID string
	// Review is the review Sumsub sent with the applicant; zero when the
	// answer had none (the documentation does not promise it).
	Review Review
}

// Review is an applicant's review status.
type Review struct {
	Status     string // reviewStatus: init, pending, prechecked, queued, completed, onHold, awaitingService
	Answer     string // reviewResult.reviewAnswer when completed: GREEN (approved) or RED (rejected)
	RejectType string // reviewResult.reviewRejectType when RED: FINAL or RETRY
}

// ReuseApplicant imports an applicant from a Reusable KYC share token into
// level levelName, or Sumsub's default level when levelName is "". Share
// tokens are single-use: after a Transient error the token may or may not
// have been used. Failures are *Error.
func (c *Client) ReuseApplicant(ctx context.Context, shareToken, levelName string) (Applicant, error) {
	q := url.Values{"shareToken": {shareToken}}
	if levelName != "" {
		q.Set("levelName", levelName)
	}
	var a applicantJSON
	if err := c.do(ctx, http.MethodPost, "/resources/api/reusableIdentity/reuse", q, shareToken, &a); err != nil {
		return Applicant{}, fmt.Errorf("sumsub: reuse share token: %w", err)
	}
	return Applicant{ID: a.ID, Review: a.Review.review()}, nil
}

// ApplicantStatus returns the review status of an applicant. Failures are *Error.
func (c *Client) ApplicantStatus(ctx context.Context, applicantID string) (Review, error) {
	var r reviewJSON
	if err := c.do(ctx, http.MethodGet, "/resources/applicants/"+url.PathEscape(applicantID)+"/status", nil, "", &r); err != nil {
		return Review{}, fmt.Errorf("sumsub: status of applicant %s: %w", applicantID, err)
	}
	return r.review(), nil
}

// Sign returns X-App-Access-Sig: the lowercase hex HMAC-SHA256, keyed with
// the secret, of ts, the upper-cased method, the path with its query exactly
// as sent, and the body. The simulator checks signatures with it too.
func Sign(secret string, ts int64, method, pathWithQuery string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte(strings.ToUpper(method)))
	m.Write([]byte(pathWithQuery))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// applicantJSON is the part of Sumsub's applicant we read.
type applicantJSON struct {
	ID     string      `json:"id"`
	Review *reviewJSON `json:"review"`
}

// reviewJSON is the review block of an applicant and the body of the status
// endpoint.
type reviewJSON struct {
	ReviewStatus string `json:"reviewStatus"`
	ReviewResult struct {
		ReviewAnswer     string `json:"reviewAnswer"`
		ReviewRejectType string `json:"reviewRejectType"`
	} `json:"reviewResult"`
}

func (r *reviewJSON) review() Review {
	if r == nil {
		return Review{}
	}
	return Review{Status: r.ReviewStatus, Answer: r.ReviewResult.ReviewAnswer, RejectType: r.ReviewResult.ReviewRejectType}
}

// errorJSON is Sumsub's error body.
type errorJSON struct {
	Description   string `json:"description"`
	Code          int    `json:"code"`
	CorrelationID string `json:"correlationId"`
	ErrorCode     int    `json:"errorCode"`
	ErrorName     string `json:"errorName"`
}

// answer is a 2xx body; valid reports whether it had what we need, since a
// garbled answer must not pass for an applicant or a review.
type answer interface{ valid() bool }

func (a *applicantJSON) valid() bool { return a.ID != "" }
func (r *reviewJSON) valid() bool    { return r.ReviewStatus != "" }

// do sends one signed request without a body and decodes a 2xx answer into
// out. shareToken, when the request carries one, is masked in the error's
// message should Sumsub echo it. Every failure is an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, shareToken string, out answer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, nil)
	if err != nil {
		// The URL has no query yet, so the error cannot show the share token.
		return &Error{Kind: Permanent, Err: fmt.Errorf("build request: %w", err)}
	}
	// The query is encoded once; the same bytes are signed and sent.
	req.URL.RawQuery = query.Encode()
	ts := c.now().Unix()
	req.Header.Set("X-App-Token", c.appToken)
	req.Header.Set("X-App-Access-Ts", strconv.FormatInt(ts, 10))
	req.Header.Set("X-App-Access-Sig", Sign(c.secretKey, ts, method, req.URL.RequestURI(), nil))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error prints the URL, and with it the share token: keep only
		// what it wraps.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Kind: Transient, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return &Error{Kind: Transient, HTTPStatus: resp.StatusCode, Err: fmt.Errorf("read answer: %w", err)}
	}

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, out); err != nil {
			return &Error{Kind: Transient, HTTPStatus: resp.StatusCode, Err: fmt.Errorf("malformed answer: %w", err)}
		}
		if !out.valid() {
			return &Error{Kind: Transient, HTTPStatus: resp.StatusCode, Err: errors.New("malformed answer: required fields missing")}
		}
		return nil
	}
	return c.answerError(resp, body, shareToken)
}

// answerError classifies a non-2xx answer.
func (c *Client) answerError(resp *http.Response, body []byte, shareToken string) *Error {
	var b errorJSON
	// A body that is not Sumsub's JSON leaves the fields empty; the status
	// alone classifies the answer.
	_ = json.Unmarshal(body, &b)
	e := &Error{
		Kind:          Permanent,
		HTTPStatus:    resp.StatusCode,
		Code:          b.ErrorCode,
		Name:          b.ErrorName,
		Description:   b.Description,
		CorrelationID: b.CorrelationID,
	}
	if shareToken != "" && strings.Contains(b.Description, shareToken) {
		e.shareToken = shareToken
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind = RateLimited
	case resp.StatusCode >= 500:
		e.Kind = Transient
	case resp.StatusCode == http.StatusUnauthorized && !shareTokenRefused(b.Description):
		e.Kind = Unauthorized
		if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil && e.TimestampRefused() {
			e.ClockOffset = c.now().Sub(date).Round(time.Second)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return e
}

// shareTokenRefused reports whether a 401's description refuses the share
// token (expired or malformed: "Token is invalid: Token _act-… is invalid
// now…"), the record's fault, rather than our signature, timestamp or app
// token, every request's.
func shareTokenRefused(description string) bool {
	return strings.HasPrefix(description, "Token is invalid") || strings.Contains(description, "_act-")
}

// probeApplicant is the applicant Probe asks about: none has this id.
const probeApplicant = "kycbatch-probe"

// Probe sends Sumsub one request that uses no share token (the status of an
// applicant that does not exist) and returns nil when Sumsub answers it as
// it answers any good request (its 404, or any other refusal of that
// applicant), or the *Error that says Sumsub, or our credentials, still fail.
func (c *Client) Probe(ctx context.Context) error {
	err := c.do(ctx, http.MethodGet, "/resources/applicants/"+probeApplicant+"/status", nil, "", &reviewJSON{})
	var se *Error
	if errors.As(err, &se) && (se.Kind == Permanent || se.Kind == RateLimited) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sumsub: probe: %w", err)
	}
	return nil
}

// maxRetryAfter caps Retry-After: a server asking for more than a day is
// misbehaving, and the duration must not overflow.
const maxRetryAfter = 24 * time.Hour

// retryAfter parses a Retry-After value, in seconds or as an HTTP date; it
// returns 0 when the value is absent, unreadable or already past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(min(max(s, 0), int64(maxRetryAfter/time.Second))) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}
