package event_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/event"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

// newBusiness stores a business, which every event belongs to.
func newBusiness(tb testing.TB, pool *pgxpool.Pool, name string) uuid.UUID {
	tb.Helper()
	id, err := auth.NewStore(pool).EnsureBusiness(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// record stores the event k of business, outside any other change.
func record(tb testing.TB, pool *pgxpool.Pool, business uuid.UUID, k event.Key) {
	tb.Helper()
	if err := event.Record(context.Background(), pool, business, k.Type, k.Subject); err != nil {
		tb.Fatal(err)
	}
}

// sortKeys compares lists of keys as sets.
var sortKeys = cmpopts.SortSlices(func(a, b event.Key) bool {
	return a.Type < b.Type || a.Type == b.Type && a.Subject < b.Subject
})

// stored lists the (type, subject) of every stored event.
func stored(tb testing.TB, pool *pgxpool.Pool) []event.Key {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT type, subject FROM events`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var keys []event.Key
	for rows.Next() {
		var k event.Key
		if err := rows.Scan(&k.Type, &k.Subject); err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return keys
}

func TestRecord(t *testing.T) {
	t.Parallel()
	batch, report := uuid.NewString(), uuid.NewString()
	tests := []struct {
		name   string
		record []event.Key
		want   []event.Key
	}{
		{
			// A change replayed after a crash records its event again.
			name: "the same type and subject twice is one event",
			record: []event.Key{
				{Type: event.BatchCompleted, Subject: batch},
				{Type: event.BatchCompleted, Subject: batch},
			},
			want: []event.Key{{Type: event.BatchCompleted, Subject: batch}},
		},
		{
			name: "another subject is another event",
			record: []event.Key{
				{Type: event.ReportReady, Subject: batch},
				{Type: event.ReportReady, Subject: report},
			},
			want: []event.Key{{Type: event.ReportReady, Subject: batch}, {Type: event.ReportReady, Subject: report}},
		},
		{
			name: "another type is another event",
			record: []event.Key{
				{Type: event.BatchCompleted, Subject: batch},
				{Type: event.BatchCancelled, Subject: batch},
			},
			want: []event.Key{{Type: event.BatchCancelled, Subject: batch}, {Type: event.BatchCompleted, Subject: batch}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := dbtest.Pool(t)
			business := newBusiness(t, pool, "acme")
			for _, k := range tt.record {
				record(t, pool, business, k)
			}
			if diff := cmp.Diff(tt.want, stored(t, pool), sortKeys); diff != "" {
				t.Errorf("stored events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRecordKeepsFirst: recording an event again keeps the first row, whose
// id is the webhook-id endpoints may have seen already.
func TestRecordKeepsFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := newBusiness(t, pool, "acme")
	k := event.Key{Type: event.BatchCompleted, Subject: uuid.NewString()}
	id := func() string {
		t.Helper()
		var id string
		if err := pool.QueryRow(ctx, `SELECT id FROM events WHERE type = $1 AND subject = $2`, k.Type, k.Subject).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	record(t, pool, business, k)
	first := id()
	record(t, pool, business, k)
	if got := id(); got != first {
		t.Errorf("event id after a second Record = %s, want the first %s", got, first)
	}
	if !strings.HasPrefix(first, "msg_") || len(first) != len("msg_")+24 {
		t.Errorf("event id %q, want msg_ and 24 characters", first)
	}
}

// TestClaimUndispatched follows one event through its dispatch: one
// transaction at a time may claim it, a claim that ends without marking it
// leaves it to the next, and once marked it is no longer claimable.
func TestClaimUndispatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := newBusiness(t, pool, "acme")
	k := event.Key{Type: event.ReportReady, Subject: uuid.NewString()}
	record(t, pool, business, k)

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck // a no-op once rolled back below
	got, err := event.ClaimUndispatched(ctx, first, k)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	want := event.Event{ID: got.ID, BusinessID: business, Type: k.Type, Subject: k.Subject, CreatedAt: got.CreatedAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claimed event mismatch (-want +got):\n%s", diff)
	}
	if got.ID == "" || got.CreatedAt.IsZero() {
		t.Errorf("claimed event has id %q and created_at %v, want both set", got.ID, got.CreatedAt)
	}

	// A claim that waited for the first would hang the dispatcher's worker
	// behind a slow transaction; with SKIP LOCKED it answers at once, and the
	// deadline turns a wait into a failure instead of a hung test.
	second, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = event.ClaimUndispatched(waitCtx, second, k)
	cancel()
	if !errors.Is(err, event.ErrNotFound) {
		t.Errorf("claim while another transaction holds it: error %v, want ErrNotFound", err)
	}
	if err := second.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// The first dispatcher dies before marking the event: the next claim gets it.
	if err := first.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := event.Body(ctx, pool, got.ID); !errors.Is(err, event.ErrNotFound) {
		t.Errorf("Body before dispatch: error %v, want ErrNotFound", err)
	}
	body := []byte(`{"type":"report.ready","data":{"id":"r1"}}`)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		ev, err := event.ClaimUndispatched(ctx, tx, k)
		if err != nil {
			return err
		}
		if ev.ID != got.ID {
			t.Errorf("claim after a rollback: event %s, want %s", ev.ID, got.ID)
		}
		return event.MarkDispatched(ctx, tx, ev.ID, body)
	})
	if err != nil {
		t.Fatalf("claim after a rollback: %v", err)
	}

	gotBody, err := event.Body(ctx, pool, got.ID)
	if err != nil {
		t.Fatalf("Body: %v", err)
	}
	if diff := cmp.Diff(string(body), string(gotBody)); diff != "" {
		t.Errorf("Body mismatch (-want +got):\n%s", diff)
	}
	if _, err := event.ClaimUndispatched(ctx, pool, k); !errors.Is(err, event.ErrNotFound) {
		t.Errorf("claim after dispatch: error %v, want ErrNotFound", err)
	}
}

// TestDispatchedWithoutBody: an event no endpoint wanted is marked with no
// body; it is dispatched all the same and has no body to send.
func TestDispatchedWithoutBody(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := newBusiness(t, pool, "acme")
	k := event.Key{Type: event.BatchCancelled, Subject: uuid.NewString()}
	record(t, pool, business, k)
	ev, err := event.ClaimUndispatched(ctx, pool, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := event.MarkDispatched(ctx, pool, ev.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := event.Body(ctx, pool, ev.ID); !errors.Is(err, event.ErrNotFound) {
		t.Errorf("Body: error %v, want ErrNotFound", err)
	}
	if _, err := event.ClaimUndispatched(ctx, pool, k); !errors.Is(err, event.ErrNotFound) {
		t.Errorf("claim after dispatch: error %v, want ErrNotFound", err)
	}
	keys, err := event.Undispatched(ctx, pool, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]event.Key(nil), keys, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Undispatched mismatch (-want +got):\n%s", diff)
	}
}

func TestUndispatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.Pool(t)
	business := newBusiness(t, pool, "acme")
	key := func(name string) event.Key { return event.Key{Type: event.BatchCompleted, Subject: name} }
	// Each event is recorded, then backdated by its age: the reconciler asks
	// for the events whose dispatch task should have run long ago.
	for _, e := range []struct {
		subject    string
		age        time.Duration
		dispatched bool
	}{
		{subject: "recent"},
		{subject: "old", age: 10 * time.Minute},
		{subject: "older", age: 20 * time.Minute},
		{subject: "oldest-dispatched", age: 30 * time.Minute, dispatched: true},
	} {
		record(t, pool, business, key(e.subject))
		_, err := pool.Exec(ctx, `
			UPDATE events SET created_at = now() - make_interval(secs => $2),
				dispatched_at = CASE WHEN $3 THEN now() END
			WHERE subject = $1`, e.subject, e.age.Seconds(), e.dispatched)
		if err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		age   time.Duration
		limit int
		want  []event.Key
	}{
		{name: "older than 5 minutes, oldest first", age: 5 * time.Minute, limit: 10, want: []event.Key{key("older"), key("old")}},
		{name: "the limit keeps the oldest", age: 5 * time.Minute, limit: 1, want: []event.Key{key("older")}},
		{name: "older than 15 minutes", age: 15 * time.Minute, limit: 10, want: []event.Key{key("older")}},
		{name: "none that old", age: time.Hour, limit: 10, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := event.Undispatched(ctx, pool, tt.age, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Undispatched(%s, %d) mismatch (-want +got):\n%s", tt.age, tt.limit, diff)
			}
		})
	}
}

// redisOpt returns the connection to a Redis database of the test's own.
func redisOpt(tb testing.TB) asynq.RedisConnOpt {
	tb.Helper()
	opt, err := asynq.ParseRedisURI(redistest.URL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return opt
}

// taskID is the ID NewDispatchTask gives the task of k.
func taskID(k event.Key) string { return "event:" + string(k.Type) + ":" + k.Subject }

func TestAnnounce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opt := redisOpt(t)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	inspector := asynq.NewInspector(opt)
	t.Cleanup(func() { inspector.Close() })
	var logs bytes.Buffer
	outbox := event.NewOutbox(client, slog.New(slog.NewTextHandler(&logs, nil)))

	k := event.Key{Type: event.BatchCompleted, Subject: uuid.NewString()}
	other := event.Key{Type: event.ReportFailed, Subject: uuid.NewString()}
	// An event announced by the change and again by the reconciler must be
	// dispatched once; the conflict is expected and not worth a warning.
	outbox.Announce(ctx, k)
	outbox.Announce(ctx, k)
	outbox.Announce(ctx, other)
	if logs.Len() != 0 {
		t.Errorf("Announce logged:\n%s\nwant nothing", logs.String())
	}

	for _, want := range []event.Key{k, other} {
		info, err := inspector.GetTaskInfo(event.Queue, taskID(want))
		if err != nil {
			t.Fatalf("task of %v: %v", want, err)
		}
		if info.Type != event.TypeDispatch || info.Queue != event.Queue || info.State != asynq.TaskStatePending {
			t.Errorf("task of %v: type %q on queue %q, %s; want %q on %q, pending",
				want, info.Type, info.Queue, info.State, event.TypeDispatch, event.Queue)
		}
		var got event.Key
		if err := json.Unmarshal(info.Payload, &got); err != nil {
			t.Fatalf("payload %s: %v", info.Payload, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload mismatch (-want +got):\n%s", diff)
		}
	}
	pending, err := inspector.ListPendingTasks(event.Queue)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, info := range pending {
		ids = append(ids, info.ID)
	}
	if diff := cmp.Diff([]string{taskID(k), taskID(other)}, ids, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("pending dispatch tasks mismatch (-want +got):\n%s", diff)
	}
}

// TestAnnounceRedisDown: with Redis unreachable the event waits safely in
// PostgreSQL, so Announce only logs a warning naming it, for the reconciler.
func TestAnnounceRedisDown(t *testing.T) {
	t.Parallel()
	// Port 1 on the loopback refuses connections at once.
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	var logs bytes.Buffer
	outbox := event.NewOutbox(client, slog.New(slog.NewTextHandler(&logs, nil)))
	k := event.Key{Type: event.ReportReady, Subject: uuid.NewString()}
	outbox.Announce(context.Background(), k)
	for _, want := range []string{"level=WARN", "event_type=" + string(k.Type), "subject=" + k.Subject} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q does not contain %q", logs.String(), want)
		}
	}
}
