// Package contract holds the JSON bodies of the HTTP contract (API.md,
// api/openapi.yaml): the wire types, the one way they are encoded, and the
// mapping of the domain's values to them. The HTTP handlers answer with
// them, and webhook events carry the same bodies, so both use this package
// and the domain packages know nothing of JSON.
package contract

import (
	"bytes"
	"encoding/json"
	"time"
)

// ContentType is the content type of every JSON answer of the API.
const ContentType = "application/json; charset=utf-8"

// Marshal encodes v as the contract writes JSON: HTML characters as they are
// (messages such as "Row 5: ... 'x'" must reach clients byte for byte) and
// no trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// timeLayout is RFC 3339 in UTC with milliseconds: 2025-10-08T11:40:20.796Z.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Time is a timestamp in the contract's format.
type Time time.Time

// MarshalJSON writes the time in UTC with milliseconds.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(timeLayout) + `"`), nil
}

// UnmarshalJSON reads a timestamp written by MarshalJSON (tests read answers back).
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	*t = Time(p)
	return err
}

// timePtr converts a nullable time; nil stays nil and is written as null.
func timePtr(t *time.Time) *Time {
	if t == nil {
		return nil
	}
	w := Time(*t)
	return &w
}

// optional writes an empty value as null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Error is the error body of the KYC batch import family.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Parameter string `json:"parameter"`
}

// Envelope is the body of every answer of the bulk usage report family.
type Envelope struct {
	Data        any    `json:"data"`
	StatusCode  int    `json:"status_code"`
	Success     bool   `json:"success"`
	Message     string `json:"message"`
	MessageCode string `json:"message_code"`
}

// Success wraps data in the report family's success envelope.
func Success(data any) Envelope {
	return Envelope{Data: data, StatusCode: 200, Success: true, Message: "Success", MessageCode: "success"}
}
