package taskqueue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The retry vocabulary of every task handler. A handler returns one of these
// to say when its task should run again; the worker's retry policy reads
// them and knows no package's own error types.
//
//   - RetryIn: the attempt failed; run again after d. It counts against the
//     task's retries and shows as a failure in the dashboard.
//   - Snooze: the task could not run yet (no rate-limit permit soon enough,
//     another task holding its record); run again after d, counting neither
//     a retry nor a failure, like River's JobSnooze.
//
// Any other error is a failure retried after the worker's default backoff;
// an error wrapping asynq.SkipRetry is not retried at all.

// delayed is an error that asks for the task to run again after a delay.
type delayed struct {
	after   time.Duration
	snoozed bool
	err     error
}

func (e *delayed) Error() string {
	if e.snoozed {
		return fmt.Sprintf("snoozed for %s: %v", e.after, e.err)
	}
	return fmt.Sprintf("%v; retry in %s", e.err, e.after)
}

func (e *delayed) Unwrap() error { return e.err }

// RetryIn returns err, which failed the task, asking for the next attempt after d.
func RetryIn(d time.Duration, err error) error {
	return &delayed{after: d, err: err}
}

// Snooze asks for the task to run again after d without counting a retry or
// a failure; reason says why, for the logs and the dashboard.
func Snooze(d time.Duration, reason string) error {
	return &delayed{after: d, snoozed: true, err: errors.New(reason)}
}

// Delay returns the delay err asks for, if it is a RetryIn or a Snooze.
func Delay(err error) (time.Duration, bool) {
	var d *delayed
	if errors.As(err, &d) {
		return d.after, true
	}
	return 0, false
}

// IsFailure reports whether err counts as a failed attempt: anything but a Snooze.
func IsFailure(err error) bool {
	var d *delayed
	return !errors.As(err, &d) || !d.snoozed
}

// Backoff is the wait before retry n (from 1): base doubling up to most,
// with jitter over its second half, so that the retries of many tasks that
// failed together do not come back together. It is the one backoff of the
// workers: Asynq's default retry policy and the records' Sumsub retries.
func Backoff(n int, base, most time.Duration) time.Duration {
	d := min(base<<min(max(n-1, 0), 20), most)
	return d/2 + rand.N(d/2+1)
}
