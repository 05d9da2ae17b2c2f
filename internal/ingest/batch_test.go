package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/event"
)

// TestBatchOfAnotherBusiness: a business cannot read or cancel another
// business's batch, nor tell it from one that does not exist.
func TestBatchOfAnotherBusiness(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	otherCtx, _ := e.business(t, "globex")
	batch := e.upload(t, ctx, "key-1", rowsFile(e.entities(t, ctx, 2)))

	ops := []struct {
		name string
		call func(context.Context, uuid.UUID) error
	}{
		{"Status", func(ctx context.Context, id uuid.UUID) error {
			_, err := e.svc.Status(ctx, id)
			return err
		}},
		{"Records", func(ctx context.Context, id uuid.UUID) error {
			_, _, err := e.svc.Records(ctx, id, "", "", 10)
			return err
		}},
		{"Cancel", func(ctx context.Context, id uuid.UUID) error {
			_, err := e.svc.Cancel(ctx, id)
			return err
		}},
	}
	// Another business's batch answers exactly as a batch that does not exist.
	callers := []struct {
		name string
		ctx  context.Context
		id   uuid.UUID
	}{
		{"another business", otherCtx, batch.ID},
		{"unknown batch", ctx, uuid.New()},
	}
	for _, op := range ops {
		for _, c := range callers {
			if err := op.call(c.ctx, c.id); !errors.Is(err, ErrBatchNotFound) {
				t.Errorf("%s of %s: %v, want %v", op.name, c.name, err, ErrBatchNotFound)
			}
		}
	}

	// The owner still sees its batch as it was: the other's Cancel did nothing.
	st, err := e.svc.Status(ctx, batch.ID)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Status != "pending" || st.Total != 2 || st.EstimatedCompletion == nil {
		t.Errorf("Status = %s with %d records, estimate %v; want pending with 2 and an estimate", st.Status, st.Total, st.EstimatedCompletion)
	}
	if n := e.count(t, `SELECT count(*) FROM events`); n != 0 {
		t.Errorf("%d events recorded, want none", n)
	}
}

// TestRecords: the records listing pages through a batch in row order,
// filters by status and refuses cursors it did not write.
func TestRecords(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, _ := e.business(t, "acme")
	ids := e.entities(t, ctx, 5)
	batch := e.upload(t, ctx, "key-1", rowsFile(ids)) // rows 2 to 6
	processed := time.Date(2025, 10, 8, 11, 40, 20, 796e6, time.UTC)
	e.exec(t, `
		UPDATE batch_records SET status = 'failed', attempts = 1, error_code = 'E1', error_message = 'bad token', processed_at = $2
		WHERE batch_id = $1 AND row_number IN (3, 5)`, batch.ID, processed)

	// pages lists the records with status, limit at a time, following the cursors.
	pages := func(t *testing.T, status string, limit int) [][]int {
		t.Helper()
		var got [][]int
		cursor := ""
		for range 10 {
			list, next, err := e.svc.Records(ctx, batch.ID, status, cursor, limit)
			if err != nil {
				t.Fatalf("Records(%q, %q, %d): %v", status, cursor, limit, err)
			}
			var page []int
			for _, r := range list {
				page = append(page, r.Row)
			}
			got = append(got, page)
			if next == "" {
				return got
			}
			cursor = next
		}
		t.Fatal("Records did not reach its last page in 10 calls")
		return nil
	}
	tests := []struct {
		status string
		limit  int
		want   [][]int
	}{
		{"", 2, [][]int{{2, 3}, {4, 5}, {6}}},
		{"", 5, [][]int{{2, 3, 4, 5, 6}}},
		{"pending", 2, [][]int{{2, 4}, {6}}},
		{"failed", 1, [][]int{{3}, {5}}},
		{"succeeded", 10, [][]int{nil}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("status=%q limit=%d", tt.status, tt.limit), func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, pages(t, tt.status, tt.limit)); diff != "" {
				t.Errorf("rows of each page (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("result", func(t *testing.T) {
		t.Parallel()
		list, _, err := e.svc.Records(ctx, batch.ID, "failed", "", 1)
		if err != nil {
			t.Fatal(err)
		}
		code, msg := "E1", "bad token"
		want := []Result{{Row: 3, ExternalID: ids[1], Status: "failed", ErrorCode: &code, ErrorMessage: &msg, Attempts: 1, ProcessedAt: &processed}}
		if diff := cmp.Diff(want, list); diff != "" {
			t.Errorf("Records (-want +got):\n%s", diff)
		}
	})

	t.Run("bad cursor", func(t *testing.T) {
		t.Parallel()
		for _, cursor := range []string{
			"not a cursor!",
			base64.RawURLEncoding.EncodeToString([]byte("page:3")),
			base64.RawURLEncoding.EncodeToString([]byte("row:three")),
		} {
			if _, _, err := e.svc.Records(ctx, batch.ID, "", cursor, 10); !errors.Is(err, ErrBadCursor) {
				t.Errorf("Records with cursor %q: %v, want %v", cursor, err, ErrBadCursor)
			}
		}
	})
}

// TestCancel: cancelling stops the records never sent to Sumsub and records
// one batch.cancelled event; a finished batch cannot be cancelled.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newServiceEnv(t)
	ctx, business := e.business(t, "acme")
	ids := e.entities(t, ctx, 4)

	t.Run("in progress", func(t *testing.T) {
		t.Parallel()
		batch := e.upload(t, ctx, "key-running", rowsFile(ids)) // rows 2 to 5
		// Row 3 has a call to Sumsub in flight and row 4 has succeeded (and
		// is counted): neither may be cancelled.
		e.exec(t, `UPDATE batches SET status = 'in_progress', started_at = now() WHERE id = $1`, batch.ID)
		e.exec(t, `UPDATE batch_records SET attempts = 1 WHERE batch_id = $1 AND row_number = 3`, batch.ID)
		e.exec(t, `UPDATE batch_records SET status = 'succeeded', attempts = 1, processed_at = now() WHERE batch_id = $1 AND row_number = 4`, batch.ID)
		e.exec(t, `INSERT INTO batch_counters (batch_id, slot, succeeded) VALUES ($1, 4, 1)`, batch.ID)

		got, err := e.svc.Cancel(ctx, batch.ID)
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		want := Status{Batch: Batch{ID: batch.ID, BusinessID: business, Provider: "sumsub", Status: "cancelled", Total: 4, Succeeded: 1, Cancelled: 2}}
		ignoreTimes := cmpopts.IgnoreFields(Batch{}, "CreatedAt", "UpdatedAt", "StartedAt", "CompletedAt")
		if diff := cmp.Diff(want, got, ignoreTimes, cmpopts.IgnoreFields(Status{}, "FileRetainedUntil"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Cancel (-want +got):\n%s", diff)
		}
		if got.CompletedAt == nil {
			t.Error("Cancel left CompletedAt nil; a cancelled batch is finished")
		}

		// A cancelled record's share token is of no more use and is dropped.
		type recordState struct {
			Row        int
			Status     string
			ShareToken *string
		}
		var records []recordState
		rows, err := e.pool.Query(t.Context(), `SELECT row_number, status, share_token FROM batch_records WHERE batch_id = $1 ORDER BY row_number`, batch.ID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r recordState
			if err := rows.Scan(&r.Row, &r.Status, &r.ShareToken); err != nil {
				t.Fatal(err)
			}
			records = append(records, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		share1, share2 := "share-1", "share-2"
		wantRecords := []recordState{{2, "cancelled", nil}, {3, "pending", &share1}, {4, "succeeded", &share2}, {5, "cancelled", nil}}
		if diff := cmp.Diff(wantRecords, records); diff != "" {
			t.Errorf("records after Cancel (-want +got):\n%s", diff)
		}

		countEvents := `SELECT count(*) FROM events WHERE type = 'batch.cancelled' AND subject = $1 AND business_id = $2`
		if n := e.count(t, countEvents, batch.ID.String(), business); n != 1 {
			t.Errorf("%d batch.cancelled events recorded, want 1", n)
		}
		if _, err := e.inspector.GetTaskInfo(event.Queue, "event:batch.cancelled:"+batch.ID.String()); err != nil {
			t.Errorf("the event's dispatch was not announced: %v", err)
		}

		// Cancelling again answers the batch as it is and records nothing.
		again, err := e.svc.Cancel(ctx, batch.ID)
		if err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("second Cancel (-first +second):\n%s", diff)
		}
		if n := e.count(t, countEvents, batch.ID.String(), business); n != 1 {
			t.Errorf("after a second Cancel, %d batch.cancelled events recorded, want 1", n)
		}
	})

	for _, status := range []string{"completed", "failed"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			batch := e.upload(t, ctx, "key-"+status, rowsFile(ids))
			e.exec(t, `UPDATE batches SET status = $2, completed_at = now() WHERE id = $1`, batch.ID, status)

			if _, err := e.svc.Cancel(ctx, batch.ID); !errors.Is(err, ErrBatchFinished) {
				t.Fatalf("Cancel: %v, want %v", err, ErrBatchFinished)
			}
			if n := e.count(t, `SELECT count(*) FROM batch_records WHERE batch_id = $1 AND status <> 'pending'`, batch.ID); n != 0 {
				t.Errorf("Cancel of a %s batch changed %d records, want none", status, n)
			}
			if n := e.count(t, `SELECT count(*) FROM events WHERE subject = $1`, batch.ID.String()); n != 0 {
				t.Errorf("Cancel of a %s batch recorded %d events, want none", status, n)
			}
		})
	}
}
