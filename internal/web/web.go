// Package web holds the wire format shared by every JSON response of the API:
// the exact content type, unescaped JSON without a trailing newline, and the
// contract's timestamp format.
package web

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/labstack/echo/v4"
)

// ContentType is the content type of every response of the API.
const ContentType = "application/json; charset=utf-8"

// JSON writes v as the response body with the given status.
func JSON(c echo.Context, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages such as "Row 5: ... 'x'" must reach clients byte for byte
	if err := enc.Encode(v); err != nil {
		return err
	}
	return c.Blob(status, ContentType, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// timeLayout is RFC 3339 in UTC with milliseconds: 2025-10-08T11:40:20.796Z.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Time is a timestamp in the contract's format.
type Time time.Time

// MarshalJSON writes the time in UTC with milliseconds.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(timeLayout) + `"`), nil
}

// UnmarshalJSON reads a timestamp written by MarshalJSON (clients and tests read responses back).
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	*t = Time(p)
	return err
}

// TimePtr converts a nullable time; nil stays nil and is written as null.
func TimePtr(t *time.Time) *Time {
	if t == nil {
		return nil
	}
	w := Time(*t)
	return &w
}
