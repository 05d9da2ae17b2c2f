package sumsubsim_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kycbatch/kycbatch/internal/sumsub"
	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      sumsub.Config
		wantDesc string
	}{
		{name: "wrong secret", cfg: sumsub.Config{AppToken: appToken, SecretKey: "wrong"}, wantDesc: "Request signature mismatch"},
		{name: "wrong app token", cfg: sumsub.Config{AppToken: "sbx:other", SecretKey: secret}, wantDesc: "App token is invalid"},
		{name: "no credentials", cfg: sumsub.Config{}, wantDesc: "App token is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, url := newSim(t, sumsubsim.Config{})
			cfg := tt.cfg
			cfg.BaseURL = url
			_, err := sumsub.New(cfg).ReuseApplicant(t.Context(), "tok-1", "")
			if diff := cmp.Diff(refused, summarize(t, sumsub.Applicant{}, err)); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
			var e *sumsub.Error
			if errors.As(err, &e) && e.Description != tt.wantDesc {
				t.Errorf("Description = %q, want %q", e.Description, tt.wantDesc)
			}
			// Refused requests count, but stay out of the rate window.
			if diff := cmp.Diff(sumsubsim.Stats{Requests: 1}, sim.Stats()); diff != "" {
				t.Errorf("stats mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	t.Parallel()
	tooFar := outcome{Failed: true, Kind: sumsub.Unauthorized, HTTPStatus: 401}
	tests := []struct {
		skew time.Duration
		want outcome
	}{
		{skew: -61 * time.Second, want: tooFar},
		{skew: -60 * time.Second, want: green},
		{skew: 0, want: green},
		{skew: 60 * time.Second, want: green},
		{skew: 61 * time.Second, want: tooFar},
	}
	for _, tt := range tests {
		t.Run(tt.skew.String(), func(t *testing.T) {
			t.Parallel()
			simClock := newClock(start)
			_, url := newSim(t, sumsubsim.Config{Now: simClock.Now})
			c := newClient(url, func() time.Time { return simClock.Now().Add(tt.skew) })
			a, err := c.ReuseApplicant(t.Context(), "tok-1", "")
			if diff := cmp.Diff(tt.want, summarize(t, a, err)); diff != "" {
				t.Errorf("outcome mismatch (-want +got):\n%s", diff)
			}
			var e *sumsub.Error
			if errors.As(err, &e) {
				if e.Description != "Request timestamp is too old or too far in the future" || !e.TimestampRefused() {
					t.Errorf("Description = %q, want the timestamp refusal", e.Description)
				}
				// The answer's Date is the simulator's clock: the offset is the skew.
				if e.ClockOffset != tt.skew {
					t.Errorf("ClockOffset = %s, want %s", e.ClockOffset, tt.skew)
				}
			}
		})
	}
}
