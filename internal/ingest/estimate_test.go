package ingest

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestEstimate(t *testing.T) {
	// Batch ids in the order the schedule breaks ties: the older first.
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	a, b, c, d := ids[0], ids[1], ids[2], ids[3]
	x, y, z := uuid.New(), uuid.New(), uuid.New() // businesses
	// seconds at 10/s, as the limiter delivers it.
	seconds := func(records float64) time.Duration {
		return time.Duration(records / (10 * efficiency) * float64(time.Second))
	}
	tests := []struct {
		name string
		work []load
		id   uuid.UUID
		want time.Duration
	}{
		{"alone", []load{{a, x, 1, 100}}, a, seconds(100)},
		{"not there", []load{{b, x, 1, 100}}, a, 0},
		// Same business: the batch with fewer records left goes first.
		{"small beside large, one business", []load{{a, x, 1, 1000}, {b, x, 1, 10}}, b, seconds(10)},
		{"large after small, one business", []load{{a, x, 1, 100}, {b, x, 1, 10}}, a, seconds(110)},
		// Equal batches of one business: the older first.
		{"equal, older first", []load{{a, x, 1, 50}, {b, x, 1, 50}}, a, seconds(50)},
		{"equal, newer second", []load{{a, x, 1, 50}, {b, x, 1, 50}}, b, seconds(100)},
		// Two businesses share the rate: 10 records of x beside 10 of y.
		{"small beside large, two businesses", []load{{a, x, 1, 10}, {b, y, 1, 1000}}, a, seconds(20)},
		// y's 100: 10 beside x's 10, then 90 alone.
		{"large beside small, two businesses", []load{{a, x, 1, 10}, {b, y, 1, 100}}, b, seconds(110)},
		// x's own batches ahead count; y shares the rate meanwhile.
		{"queued behind its business's smaller batch", []load{{a, x, 1, 10}, {b, x, 1, 20}, {c, y, 1, 1000}}, b, seconds(60)},
		// Weight 3 against 1: x's 30 go at three quarters of the rate.
		{"weighted", []load{{a, x, 3, 30}, {b, y, 1, 1000}}, a, seconds(40)},
		{"weighted, the light one", []load{{a, x, 3, 30}, {b, y, 1, 20}}, b, seconds(50)},
		{"three businesses", []load{{a, x, 1, 100}, {b, y, 1, 100}, {c, z, 1, 100}, {d, z, 1, 50}}, a, seconds(300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimate(tt.work, tt.id, 10); got.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
				t.Errorf("estimate = %s, want %s", got, tt.want)
			}
		})
	}
}
