package sumsub_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

const (
	appToken = "sbx:test-app-token"
	secret   = "kycbatch-test-secret"
)

// fixedNow is the clock of the tests that need one.
var fixedNow = time.Date(2025, 8, 5, 15, 31, 57, 0, time.UTC)

func TestSign(t *testing.T) {
	t.Parallel()
	// The example of SUMSUB.md, signed with our test secret.
	const example = "/resources/accessTokens?userId=cfd20712-...&levelName=basic-kyc-level&ttlInSecs=600"
	tests := []struct {
		name    string
		method  string
		path    string
		body    []byte
		signed  string // what the signature covers, per SUMSUB.md
		wantHex string // pinned, so that any change in Sign fails
	}{
		{
			name:    "documented example",
			method:  "POST",
			path:    example,
			signed:  "1607551635POST" + example,
			wantHex: "a9679e983036f69a5e9c8d9c99876729050092824858fa7824e9f467627bcec8",
		},
		{
			name:    "method is upper-cased",
			method:  "post",
			path:    example,
			signed:  "1607551635POST" + example,
			wantHex: "a9679e983036f69a5e9c8d9c99876729050092824858fa7824e9f467627bcec8",
		},
		{
			name:    "body follows the path",
			method:  "POST",
			path:    "/resources/applicants?levelName=basic-kyc-level",
			body:    []byte(`{"externalUserId":"u-1"}`),
			signed:  `1607551635POST/resources/applicants?levelName=basic-kyc-level{"externalUserId":"u-1"}`,
			wantHex: "9dbc4282f9384700b26f9fcf48fa8cbb3bfb34c1ae32a3622a0dc92fed608bc0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := hmac.New(sha256.New, []byte(secret))
			m.Write([]byte(tt.signed))
			independent := hex.EncodeToString(m.Sum(nil))
			if independent != tt.wantHex {
				t.Fatalf("the pinned signature is wrong: HMAC of %q is %s, pinned %s", tt.signed, independent, tt.wantHex)
			}
			got := sumsub.Sign(secret, 1607551635, tt.method, tt.path, tt.body)
			if diff := cmp.Diff(tt.wantHex, got); diff != "" {
				t.Errorf("Sign mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// sentRequest is what the client put on the wire.
type sentRequest struct {
	Method     string
	RequestURI string
	AppToken   string
	Ts         string
	SigValid   bool
	UserAgent  string
}

func TestRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(context.Context, *sumsub.Client) error
		want sentRequest
	}{
		{
			name: "reuse into the default level leaves levelName out",
			call: func(ctx context.Context, c *sumsub.Client) error {
				_, err := c.ReuseApplicant(ctx, "tok-1", "")
				return err
			},
			want: sentRequest{Method: "POST", RequestURI: "/resources/api/reusableIdentity/reuse?shareToken=tok-1"},
		},
		{
			name: "reuse into a level",
			call: func(ctx context.Context, c *sumsub.Client) error {
				_, err := c.ReuseApplicant(ctx, "tok-1", "levelKyc")
				return err
			},
			want: sentRequest{Method: "POST", RequestURI: "/resources/api/reusableIdentity/reuse?levelName=levelKyc&shareToken=tok-1"},
		},
		{
			name: "the token is escaped, and the escaped form is signed",
			call: func(ctx context.Context, c *sumsub.Client) error {
				_, err := c.ReuseApplicant(ctx, "a+b/c=d&e f", "basic-kyc-level")
				return err
			},
			want: sentRequest{Method: "POST", RequestURI: "/resources/api/reusableIdentity/reuse?levelName=basic-kyc-level&shareToken=a%2Bb%2Fc%3Dd%26e+f"},
		},
		{
			name: "status escapes the applicant id",
			call: func(ctx context.Context, c *sumsub.Client) error {
				_, err := c.ApplicantStatus(ctx, "a/b c")
				return err
			},
			want: sentRequest{Method: "GET", RequestURI: "/resources/applicants/a%2Fb%20c/status"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got sentRequest
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = sentRequest{
					Method:     r.Method,
					RequestURI: r.RequestURI,
					AppToken:   r.Header.Get("X-App-Token"),
					Ts:         r.Header.Get("X-App-Access-Ts"),
					SigValid:   r.Header.Get("X-App-Access-Sig") == sumsub.Sign(secret, fixedNow.Unix(), r.Method, r.RequestURI, nil),
					UserAgent:  r.Header.Get("User-Agent"),
				}
				fmt.Fprint(w, `{"id":"689223ed75b5d1bc2bb38gdg","reviewStatus":"init"}`)
			}))
			t.Cleanup(srv.Close)
			c := sumsub.New(sumsub.Config{BaseURL: srv.URL + "/", AppToken: appToken, SecretKey: secret, Now: func() time.Time { return fixedNow }})

			if err := tt.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.AppToken = appToken
			want.Ts = fmt.Sprint(fixedNow.Unix())
			want.SigValid = true
			want.UserAgent = "kycbatch/1"
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// answer is what a test server sends back.
type answer struct {
	status int
	header map[string]string
	body   string
}

// errorOpts compare the fields of an *Error that describe the answer.
var errorOpts = cmp.Options{cmpopts.IgnoreFields(sumsub.Error{}, "Err"), cmpopts.IgnoreUnexported(sumsub.Error{})}

func TestReuseApplicantAnswers(t *testing.T) {
	t.Parallel()
	const invalid = `{"code":400,"errorCode":10503,"errorName":"invalid-share-token","description":"Share token is invalid or has been used","correlationId":"req-1"}`
	tests := []struct {
		name    string
		answer  answer
		want    sumsub.Applicant
		wantErr *sumsub.Error
	}{
		{
			name: "approved applicant",
			answer: answer{status: 200, body: `{"id":"689223ed75b5d1bc2bb38gdg","createdAt":"2025-08-05 15:31:57","clientId":"DonorCompany",` +
				`"externalUserId":"copy-4ba4dfa5","info":{},"review":{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"GREEN"}}}`},
			want: sumsub.Applicant{ID: "689223ed75b5d1bc2bb38gdg", Review: sumsub.Review{Status: "completed", Answer: "GREEN"}},
		},
		{
			name:   "rejected applicant",
			answer: answer{status: 200, body: `{"id":"a1","review":{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"RETRY"}}}`},
			want:   sumsub.Applicant{ID: "a1", Review: sumsub.Review{Status: "completed", Answer: "RED", RejectType: "RETRY"}},
		},
		{
			name:   "applicant without a review block",
			answer: answer{status: 201, body: `{"id":"a1"}`},
			want:   sumsub.Applicant{ID: "a1"},
		},
		{
			name:    "success without an id is a lost answer",
			answer:  answer{status: 200, body: `{"review":{"reviewStatus":"completed"}}`},
			wantErr: &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 200},
		},
		{
			name:    "success that is not JSON is a lost answer",
			answer:  answer{status: 200, body: `<html>gateway</html>`},
			wantErr: &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 200},
		},
		{
			name:   "reuse refused",
			answer: answer{status: 400, body: invalid},
			wantErr: &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 400, Code: sumsub.CodeInvalidShareToken, Name: "invalid-share-token",
				Description: "Share token is invalid or has been used", CorrelationID: "req-1"},
		},
		{
			name:    "unauthorized",
			answer:  answer{status: 401, body: `{"code":401,"description":"Request signature mismatch","correlationId":"req-2"}`},
			wantErr: &sumsub.Error{Kind: sumsub.Unauthorized, HTTPStatus: 401, Description: "Request signature mismatch", CorrelationID: "req-2"},
		},
		{
			name:    "an expired share token's 401 is the record's",
			answer:  answer{status: 401, body: `{"code":401,"description":"Token is invalid: Token _act-sbx-1 is invalid now","correlationId":"req-3"}`},
			wantErr: &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 401, Description: "Token is invalid: Token _act-sbx-1 is invalid now", CorrelationID: "req-3"},
		},
		{
			name:    "4xx without Sumsub's body",
			answer:  answer{status: 404, body: `<html>not found</html>`},
			wantErr: &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 404},
		},
		{
			name:    "redirects are not followed",
			answer:  answer{status: 302, header: map[string]string{"Location": "https://elsewhere.example/"}},
			wantErr: &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 302},
		},
		{
			name:    "429 with Retry-After in seconds",
			answer:  answer{status: 429, header: map[string]string{"Retry-After": "7"}, body: `{"code":429,"description":"Too many requests","correlationId":"req-3"}`},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429, Description: "Too many requests", CorrelationID: "req-3", RetryAfter: 7 * time.Second},
		},
		{
			name:    "429 with Retry-After as an HTTP date",
			answer:  answer{status: 429, header: map[string]string{"Retry-After": fixedNow.Add(30 * time.Second).Format(http.TimeFormat)}},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429, RetryAfter: 30 * time.Second},
		},
		{
			name:    "429 with a past Retry-After date",
			answer:  answer{status: 429, header: map[string]string{"Retry-After": fixedNow.Add(-time.Minute).Format(http.TimeFormat)}},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429},
		},
		{
			name:    "429 with an unreadable Retry-After",
			answer:  answer{status: 429, header: map[string]string{"Retry-After": "soon"}},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429},
		},
		{
			name:    "429 with an absurd Retry-After is capped",
			answer:  answer{status: 429, header: map[string]string{"Retry-After": "99999999999999999"}},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429, RetryAfter: 24 * time.Hour},
		},
		{
			name:    "429 without Retry-After",
			answer:  answer{status: 429, body: `{"code":429,"description":"Too many requests"}`},
			wantErr: &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429, Description: "Too many requests"},
		},
		{
			name:    "503 with Retry-After",
			answer:  answer{status: 503, header: map[string]string{"Retry-After": "2"}, body: `{"code":503,"description":"Service temporarily unavailable"}`},
			wantErr: &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 503, Description: "Service temporarily unavailable", RetryAfter: 2 * time.Second},
		},
		{
			name:    "500 ignores Retry-After",
			answer:  answer{status: 500, header: map[string]string{"Retry-After": "2"}},
			wantErr: &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 500},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.answer.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.answer.status)
				fmt.Fprint(w, tt.answer.body)
			}))
			t.Cleanup(srv.Close)
			c := sumsub.New(sumsub.Config{BaseURL: srv.URL, AppToken: appToken, SecretKey: secret, Now: func() time.Time { return fixedNow }})

			got, err := c.ReuseApplicant(t.Context(), "tok-1", "")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("applicant mismatch (-want +got):\n%s", diff)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ReuseApplicant: %v", err)
				}
				return
			}
			gotErr := asError(t, err)
			if diff := cmp.Diff(tt.wantErr, gotErr, errorOpts); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if got, want := gotErr.Temporary(), tt.wantErr.Kind != sumsub.Permanent; got != want {
				t.Errorf("Temporary() = %v, want %v", got, want)
			}
		})
	}
}

func TestApplicantStatusAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    sumsub.Review
		wantErr *sumsub.Error
	}{
		{
			name: "completed",
			body: `{"createDate":"2025-08-05 15:31:57","reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"FINAL"}}`,
			want: sumsub.Review{Status: "completed", Answer: "RED", RejectType: "FINAL"},
		},
		{
			name: "pending",
			body: `{"reviewStatus":"pending"}`,
			want: sumsub.Review{Status: "pending"},
		},
		{
			name:    "no reviewStatus is a lost answer",
			body:    `{}`,
			wantErr: &sumsub.Error{Kind: sumsub.Transient, HTTPStatus: 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, tt.body)
			}))
			t.Cleanup(srv.Close)
			c := sumsub.New(sumsub.Config{BaseURL: srv.URL, AppToken: appToken, SecretKey: secret})

			got, err := c.ApplicantStatus(t.Context(), "689223ed75b5d1bc2bb38gdg")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("review mismatch (-want +got):\n%s", diff)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ApplicantStatus: %v", err)
				}
				return
			}
			if diff := cmp.Diff(tt.wantErr, asError(t, err), errorOpts); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	sim := httptest.NewServer(sumsubsim.New(sumsubsim.Config{AppToken: appToken, SecretKey: secret}))
	t.Cleanup(sim.Close)
	c := sumsub.New(sumsub.Config{BaseURL: sim.URL, AppToken: appToken, SecretKey: secret, Timeout: 100 * time.Millisecond})

	start := time.Now()
	_, err := c.ReuseApplicant(t.Context(), sumsubsim.PrefixSlow+"1", "")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("ReuseApplicant took %v despite a 100ms timeout", elapsed)
	}
	if diff := cmp.Diff(&sumsub.Error{Kind: sumsub.Transient}, asError(t, err), errorOpts); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s", diff)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false, want true", err)
	}
}

func TestConnectionErrorHidesTheURL(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more: the connection is refused
	c := sumsub.New(sumsub.Config{BaseURL: "http://" + addr, AppToken: appToken, SecretKey: secret})

	const shareToken = "share-token-that-must-not-leak"
	_, err = c.ReuseApplicant(t.Context(), shareToken, "levelKyc")
	if diff := cmp.Diff(&sumsub.Error{Kind: sumsub.Transient}, asError(t, err), errorOpts); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s", diff)
	}
	for _, secretish := range []string{shareToken, appToken, secret} {
		if strings.Contains(err.Error(), secretish) {
			t.Errorf("Error() = %q, contains %q", err, secretish)
		}
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		t.Errorf("the error chain holds a *url.Error (%v), which prints the share token", ue)
	}
}

func TestErrorMasksEchoedTokens(t *testing.T) {
	t.Parallel()
	const shareToken = "plain-share-token-42"
	description := "Token is invalid: Token _act-sbx-jwt-eyJhbGciOi.eyJzdWIi.c2ln is invalid now; token " + shareToken + " rejected"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"code":401,"description":%q,"correlationId":"req-9"}`, description)
	}))
	t.Cleanup(srv.Close)
	c := sumsub.New(sumsub.Config{BaseURL: srv.URL, AppToken: appToken, SecretKey: secret})

	_, err := c.ReuseApplicant(t.Context(), shareToken, "")
	e := asError(t, err)
	if e.Description != description {
		t.Errorf("Description = %q, want Sumsub's description as sent, %q", e.Description, description)
	}
	want := "sumsub: reuse share token: permanent: HTTP 401: Token is invalid: Token [redacted] is invalid now; token [redacted] rejected (correlationId req-9)"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Error() mismatch (-want +got):\n%s", diff)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *sumsub.Error
		want string
	}{
		{
			name: "reuse refused",
			err: &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 400, Code: 10503, Name: "invalid-share-token",
				Description: "Share token is invalid or has been used", CorrelationID: "req-1"},
			want: "permanent: HTTP 400, invalid-share-token (10503): Share token is invalid or has been used (correlationId req-1)",
		},
		{
			name: "code without a name",
			err:  &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 400, Code: 10599},
			want: "permanent: HTTP 400, errorCode 10599",
		},
		{
			name: "rate limited",
			err:  &sumsub.Error{Kind: sumsub.RateLimited, HTTPStatus: 429, Description: "Too many requests", RetryAfter: 2 * time.Second},
			want: "rate limited: HTTP 429: Too many requests (retry after 2s)",
		},
		{
			name: "no answer",
			err:  &sumsub.Error{Kind: sumsub.Transient, Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")},
			want: "transient: no answer: dial tcp 127.0.0.1:1: connect: connection refused",
		},
		{
			name: "echoed tokens are masked",
			err:  &sumsub.Error{Kind: sumsub.Permanent, HTTPStatus: 401, Description: "Token _act-sbx-6f1d, and eyJhbGciOi.eyJ9.sig are invalid"},
			want: "permanent: HTTP 401: Token [redacted], and [redacted] are invalid",
		},
		{
			name: "unknown kind",
			err:  &sumsub.Error{Kind: sumsub.Kind(7), HTTPStatus: 418},
			want: "Kind(7): HTTP 418",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("Error() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		want string
	}{
		{sumsub.CodeNotInPartnersList, "not-in-partners-list"},
		{sumsub.CodeInvalidShareToken, "invalid-share-token"},
		{sumsub.CodeNonSuitableShareToken, "non-suitable-share-token"},
		{sumsub.CodeReusableKYCNotCompatibleDocType, "reusable-kyc-not-compatible-doc-type"},
		{10599, ""},
	}
	for _, tt := range tests {
		if got := sumsub.ErrorName(tt.code); got != tt.want {
			t.Errorf("ErrorName(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

// asError returns the *sumsub.Error in err's chain, failing the test when there is none.
func asError(tb testing.TB, err error) *sumsub.Error {
	tb.Helper()
	var e *sumsub.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %v (%T) holds no *sumsub.Error", err, err)
	}
	return e
}
