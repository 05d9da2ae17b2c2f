package sumsub

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Kind says what a caller should do with a failed call: give up on the
// record, slow down, or try again later.
type Kind int

// The kinds of failure. The zero Kind is Permanent, so that an Error built
// without one is never retried by mistake.
const (
	// Permanent failures (4xx other than 429) fail the record with Sumsub's
	// errorCode, errorName and description: asking again gives the same answer.
	Permanent Kind = iota
	// RateLimited failures (429) are retried once the rate window has moved on.
	RateLimited
	// Transient failures (5xx, timeouts, connection errors, lost or garbled
	// answers) are retried with backoff.
	Transient
	// Unauthorized failures (401 for our signature, our timestamp or our
	// app token, not for a share token) are no record's fault: every
	// request gets the same answer until the secret or the clock is right.
	Unauthorized
)

// String names the kind in error messages.
func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case RateLimited:
		return "rate limited"
	case Transient:
		return "transient"
	case Unauthorized:
		return "unauthorized"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Reuse refusals: the errorCode values Sumsub documents for
// /resources/api/reusableIdentity/reuse. Each comment gives the errorName
// Sumsub sends with it, which ErrorName also returns.
const (
	CodeNotInPartnersList                 = 10501 // not-in-partners-list
	CodeInvalidPartnerID                  = 10502 // invalid-partner-id
	CodeInvalidShareToken                 = 10503 // invalid-share-token: malformed, expired or already used
	CodeNonSuitableShareToken             = 10504 // non-suitable-share-token: not usable with this level
	CodeReusableKYCDisabled               = 10505 // reusable-kyc-disabled
	CodeReusableKYCNotReusable            = 10506 // reusable-kyc-not-reusable
	CodeReusableKYCNotApprovedApplicant   = 10507 // reusable-kyc-not-approved-applicant
	CodeReusableKYCNotActiveApplicant     = 10508 // reusable-kyc-not-active-applicant
	CodeReusableKYCNotKYCModerationType   = 10509 // reusable-kyc-not-kyc-moderation-type
	CodeReusableKYCNotSelfieOrIdentityDoc = 10510 // reusable-kyc-not-selfie-or-identity-doc
	CodeReusableKYCNotSelfieLiveness      = 10511 // reusable-kyc-not-selfie-liveness
	CodeReusableKYCNotReqDocOverlap       = 10512 // reusable-kyc-not-req-doc-overlap
	CodeReusableKYCNotCompatibleDocType   = 10513 // reusable-kyc-not-compatible-doc-type
)

var errorNames = map[int]string{
	CodeNotInPartnersList:                 "not-in-partners-list",
	CodeInvalidPartnerID:                  "invalid-partner-id",
	CodeInvalidShareToken:                 "invalid-share-token",
	CodeNonSuitableShareToken:             "non-suitable-share-token",
	CodeReusableKYCDisabled:               "reusable-kyc-disabled",
	CodeReusableKYCNotReusable:            "reusable-kyc-not-reusable",
	CodeReusableKYCNotApprovedApplicant:   "reusable-kyc-not-approved-applicant",
	CodeReusableKYCNotActiveApplicant:     "reusable-kyc-not-active-applicant",
	CodeReusableKYCNotKYCModerationType:   "reusable-kyc-not-kyc-moderation-type",
	CodeReusableKYCNotSelfieOrIdentityDoc: "reusable-kyc-not-selfie-or-identity-doc",
	CodeReusableKYCNotSelfieLiveness:      "reusable-kyc-not-selfie-liveness",
	CodeReusableKYCNotReqDocOverlap:       "reusable-kyc-not-req-doc-overlap",
	CodeReusableKYCNotCompatibleDocType:   "reusable-kyc-not-compatible-doc-type",
}

// ErrorName returns the errorName Sumsub documents for a reuse errorCode, or
// "" for a code it does not document, so that the simulator answers with the
// same pairs as Sumsub.
func ErrorName(code int) string {
	return errorNames[code]
}

// Error is every failure of a Sumsub call, classified by Kind so that the
// caller decides between failing the record and retrying it without parsing
// messages. Its Error method never shows the share token, the app token or
// the secret key, so it is safe to log.
type Error struct {
	Kind          Kind
	HTTPStatus    int           // 0 when there was no answer (timeout, connection error)
	Code          int           // Sumsub's errorCode, 0 when absent
	Name          string        // Sumsub's errorName, e.g. "invalid-share-token"
	Description   string        // Sumsub's description, as sent: it may echo a token, so Error masks it
	CorrelationID string        // Sumsub's correlationId, for their support
	RetryAfter    time.Duration // from Retry-After on a 429 or 503, 0 when absent
	// ClockOffset is, for a refused timestamp, how far our clock is ahead
	// of Sumsub's (negative: behind) by its answer's Date header, to the
	// second; 0 when unknown.
	ClockOffset time.Duration
	Err         error // the underlying transport or decoding error, never a *url.Error

	// shareToken is the request's share token when Description echoes it,
	// so that Error masks it even when it has no recognisable shape.
	shareToken string
}

// Error describes the failure without secrets: tokens that Sumsub echoes in
// its description are masked, and transport errors were stripped of the
// request URL (which carries the share token) when the Error was built.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	} else {
		b.WriteString(": no answer")
	}
	switch {
	case e.Name != "" && e.Code != 0:
		fmt.Fprintf(&b, ", %s (%d)", e.Name, e.Code)
	case e.Name != "":
		fmt.Fprintf(&b, ", %s", e.Name)
	case e.Code != 0:
		fmt.Fprintf(&b, ", errorCode %d", e.Code)
	}
	if d := e.Message(); d != "" {
		b.WriteString(": ")
		b.WriteString(d)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.CorrelationID != "" {
		fmt.Fprintf(&b, " (correlationId %s)", e.CorrelationID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Unwrap exposes the transport error, so that errors.Is(err,
// context.DeadlineExceeded) works.
func (e *Error) Unwrap() error {
	return e.Err
}

// Temporary reports whether the same call may succeed later.
func (e *Error) Temporary() bool {
	return e.Kind != Permanent
}

// TimestampRefused reports whether Sumsub refused our request's timestamp:
// the clock of the process that signed it is more than MaxClockSkew off.
func (e *Error) TimestampRefused() bool {
	return e.Kind == Unauthorized && strings.Contains(strings.ToLower(e.Description), "timestamp")
}

// MaxClockSkew is how far from Sumsub's clock a request's timestamp may be,
// either way.
const MaxClockSkew = time.Minute

// Message is Sumsub's description with every share token, token id
// (_act-…) and JWT-shaped string removed: safe to store, return and log.
func (e *Error) Message() string {
	return Redact(e.Description, e.shareToken)
}

// secretShape matches what Sumsub's descriptions may quote of a share
// token: its id ("Token _act-… is invalid now"; share tokens are unsigned
// JWTs whose claim is that id, so the id rebuilds the token) and JWTs.
var secretShape = regexp.MustCompile(`_act-[^\s,;:'"]*|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*`)

const masked = "[redacted]"

// Redact removes from a text Sumsub wrote the share token the request
// carried (when not empty), token ids and JWT-shaped strings.
func Redact(text, shareToken string) string {
	if shareToken != "" {
		text = strings.ReplaceAll(text, shareToken, masked)
	}
	return secretShape.ReplaceAllString(text, masked)
}
