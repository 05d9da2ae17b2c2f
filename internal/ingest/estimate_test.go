package ingest

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestEstimate(t *testing.T) {
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	tests := []struct {
		name string
		work map[uuid.UUID]int
		id   uuid.UUID
		rate int
		want time.Duration
	}{
		{"alone", map[uuid.UUID]int{a: 100}, a, 10, 10 * time.Second},
		{"nothing left", map[uuid.UUID]int{b: 100}, a, 10, 0},
		// 10 records each at 5/s while both run: 2 s.
		{"small beside large", map[uuid.UUID]int{a: 10, b: 1000}, a, 10, 2 * time.Second},
		// 10 each (2 s together), then the last 90 alone at 10/s (9 s).
		{"large beside small", map[uuid.UUID]int{a: 10, b: 100}, b, 10, 11 * time.Second},
		// Three equal batches finish together: 300 records at 10/s.
		{"three equal", map[uuid.UUID]int{a: 100, b: 100, c: 100}, c, 10, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimate(tt.work, tt.id, tt.rate); got != tt.want {
				t.Errorf("estimate = %s, want %s", got, tt.want)
			}
		})
	}
}
