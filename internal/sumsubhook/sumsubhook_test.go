package sumsubhook_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/sumsubhook"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// createdAt is the createdAtMs of the test webhooks, as Sumsub writes it.
const createdAt = "2020-02-21 13:23:19.002"

// webhook returns an applicantReviewed body as Sumsub sends it (a completed
// GREEN review of app-1), after edit has changed its fields; edit may be nil.
func webhook(tb testing.TB, edit func(m map[string]any)) []byte {
	tb.Helper()
	m := map[string]any{
		"applicantId":    "app-1",
		"inspectionId":   "insp-1",
		"correlationId":  "req-1",
		"externalUserId": "ext-1",
		"levelName":      "basic-kyc-level",
		"type":           "applicantReviewed",
		"reviewStatus":   "completed",
		"createdAtMs":    createdAt,
		"clientId":       "kycbatch",
		"reviewResult":   map[string]any{"reviewAnswer": "GREEN"},
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	t.Parallel()
	reviewedAt := time.Date(2020, 2, 21, 13, 23, 19, 2_000_000, time.UTC)
	// The body-hash key is computed from the very bytes Parse is given, so
	// the body is built once and shared by the case and its expectation.
	anonymous := webhook(t, func(m map[string]any) {
		delete(m, "correlationId")
		delete(m, "createdAtMs")
	})
	anonymousSum := sha256.Sum256(anonymous)

	tests := []struct {
		name    string
		body    []byte
		want    entity.Review
		wantOK  bool
		wantErr error
	}{
		{
			name:   "GREEN keyed by its correlationId",
			body:   webhook(t, nil),
			wantOK: true,
			want: entity.Review{
				ApplicantID: "app-1", EventKey: "correlation:req-1", Answer: "GREEN",
				LevelName: "basic-kyc-level", CorrelationID: "req-1", ReviewedAt: reviewedAt,
			},
		},
		{
			name: "RED with its reject type",
			body: webhook(t, func(m map[string]any) {
				m["reviewResult"] = map[string]any{"reviewAnswer": "RED", "reviewRejectType": "FINAL", "rejectLabels": []string{"FORGERY"}}
			}),
			wantOK: true,
			want: entity.Review{
				ApplicantID: "app-1", EventKey: "correlation:req-1", Answer: "RED", RejectType: "FINAL",
				LevelName: "basic-kyc-level", CorrelationID: "req-1", ReviewedAt: reviewedAt,
			},
		},
		{
			name:   "without correlationId, keyed by createdAtMs",
			body:   webhook(t, func(m map[string]any) { delete(m, "correlationId") }),
			wantOK: true,
			want: entity.Review{
				ApplicantID: "app-1", EventKey: "created:" + createdAt, Answer: "GREEN",
				LevelName: "basic-kyc-level", ReviewedAt: reviewedAt,
			},
		},
		{
			name:   "without either, keyed by the body's SHA-256",
			body:   anonymous,
			wantOK: true,
			want: entity.Review{
				ApplicantID: "app-1", EventKey: "body:" + hex.EncodeToString(anonymousSum[:]), Answer: "GREEN",
				LevelName: "basic-kyc-level",
			},
		},
		{
			// A review whose time cannot be read is still applied; it just
			// cannot be ordered against the applicant's other reviews.
			name:   "unreadable createdAtMs leaves ReviewedAt zero",
			body:   webhook(t, func(m map[string]any) { m["createdAtMs"] = "21/02/2020 13:23" }),
			wantOK: true,
			want: entity.Review{
				ApplicantID: "app-1", EventKey: "correlation:req-1", Answer: "GREEN",
				LevelName: "basic-kyc-level", CorrelationID: "req-1",
			},
		},
		{
			name: "another type",
			body: webhook(t, func(m map[string]any) { m["type"] = "applicantPending" }),
		},
		{
			name: "a review not completed",
			body: webhook(t, func(m map[string]any) { m["reviewStatus"] = "onHold" }),
		},
		{
			name: "no reviewResult",
			body: webhook(t, func(m map[string]any) { delete(m, "reviewResult") }),
		},
		{
			name: "an answer that decides nothing",
			body: webhook(t, func(m map[string]any) { m["reviewResult"] = map[string]any{"reviewAnswer": "YELLOW"} }),
		},
		{
			name: "an empty answer",
			body: webhook(t, func(m map[string]any) { m["reviewResult"] = map[string]any{} }),
		},
		{
			name: "an empty applicantId",
			body: webhook(t, func(m map[string]any) { m["applicantId"] = "" }),
		},
		{
			name:    "not JSON",
			body:    []byte("applicantReviewed app-1 GREEN"),
			wantErr: sumsubhook.ErrNotJSON,
		},
		{
			name:    "truncated JSON",
			body:    webhook(t, nil)[:40],
			wantErr: sumsubhook.ErrNotJSON,
		},
		{
			name:    "empty body",
			body:    []byte{},
			wantErr: sumsubhook.ErrNotJSON,
		},
		{
			name:    "a JSON array",
			body:    []byte(`[{"type":"applicantReviewed"}]`),
			wantErr: sumsubhook.ErrNotJSON,
		},
		{
			name:    "JSON null",
			body:    []byte(" null "),
			wantErr: sumsubhook.ErrNotJSON,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok, err := sumsubhook.Parse(tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
			}
			if ok != tt.wantOK {
				t.Fatalf("Parse ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse review mismatch (-want +got):\n%s", diff)
			}
			// cmp compares times with Equal, which ignores the zone; Sumsub
			// writes UTC and the review must say so.
			if !got.ReviewedAt.IsZero() && got.ReviewedAt.Location() != time.UTC {
				t.Errorf("ReviewedAt is in %s, want UTC", got.ReviewedAt.Location())
			}
		})
	}
}

// review is a completed review of applicant at the given minute past noon,
// named by key.
func review(applicant, key, answer string, minute int) entity.Review {
	return entity.Review{
		ApplicantID: applicant, EventKey: key, Answer: answer, CorrelationID: key,
		LevelName:  "basic-kyc-level",
		ReviewedAt: time.Date(2025, 3, 1, 12, minute, 0, 0, time.UTC),
	}
}

// fixture is a business whose entity holds applicant app-1, imported by a
// batch: row 2 is the succeeded record that imported it (its review still
// pending, as an import leaves it) and row 3 a record of the applicant that
// is still pending.
type fixture struct {
	pool     *pgxpool.Pool
	external uuid.UUID
	batch    uuid.UUID
}

func newFixture(tb testing.TB) fixture {
	tb.Helper()
	ctx := context.Background()
	pool := dbtest.Pool(tb)
	business, err := auth.NewStore(pool).EnsureBusiness(ctx, "acme")
	if err != nil {
		tb.Fatal(err)
	}
	ctx = auth.WithBusiness(ctx, business)
	e, err := entity.NewStore(pool).Create(ctx, uuid.New(), "INDIVIDUAL")
	if err != nil {
		tb.Fatal(err)
	}
	linked, err := entity.LinkApplicant(ctx, pool, entity.Link{
		Business: business, ExternalID: e.ExternalID, ApplicantID: "app-1", KYCStatus: "PENDING",
	})
	if err != nil {
		tb.Fatal(err)
	}
	if !linked.Found {
		tb.Fatal("LinkApplicant did not find the entity just created")
	}
	batch := uuid.New()
	_, err = pool.Exec(ctx, `
		WITH batch AS (
			INSERT INTO batches (id, business_id, idempotency_key, provider, status, total_records, file_key, file_size, file_sha256)
			VALUES ($1, $2, 'hook', 'sumsub', 'in_progress', 2, 'x', 0, ''))
		INSERT INTO batch_records (batch_id, row_number, external_id, status, applicant_id, review_status)
		VALUES ($1, 2, $3, 'succeeded', 'app-1', 'pending'),
		       ($1, 3, $3, 'pending', 'app-1', NULL)`, batch, business, e.ExternalID)
	if err != nil {
		tb.Fatal(err)
	}
	return fixture{pool: pool, external: e.ExternalID, batch: batch}
}

// record is how a batch record shows its review; empty strings stand for NULL.
type record struct {
	Status       string
	ReviewStatus string
	ReviewAnswer string
}

// state is everything a review may change.
type state struct {
	KYCStatus string
	Records   map[int]record
	// Reviews counts the stored reviews of every applicant.
	Reviews int
}

// initial is the state newFixture leaves.
var initial = state{
	KYCStatus: "PENDING",
	Records: map[int]record{
		2: {Status: "succeeded", ReviewStatus: "pending"},
		3: {Status: "pending"},
	},
}

func (f fixture) state(tb testing.TB) state {
	tb.Helper()
	ctx := context.Background()
	s := state{Records: map[int]record{}}
	if err := f.pool.QueryRow(ctx, `SELECT kyc_status FROM entities WHERE external_id = $1`, f.external).Scan(&s.KYCStatus); err != nil {
		tb.Fatal(err)
	}
	rows, err := f.pool.Query(ctx, `
		SELECT row_number, status, coalesce(review_status, ''), coalesce(review_answer, '')
		FROM batch_records WHERE batch_id = $1`, f.batch)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n int
		var r record
		if err := rows.Scan(&n, &r.Status, &r.ReviewStatus, &r.ReviewAnswer); err != nil {
			tb.Fatal(err)
		}
		s.Records[n] = r
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM sumsub_reviews`).Scan(&s.Reviews); err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestApply(t *testing.T) {
	t.Parallel()
	rejected := state{
		KYCStatus: "REJECTED",
		Records: map[int]record{
			2: {Status: "succeeded", ReviewStatus: "completed", ReviewAnswer: "RED"},
			3: {Status: "pending"},
		},
	}
	tests := []struct {
		name string
		// before are applied first, each expected to succeed.
		before []entity.Review
		review entity.Review
		want   entity.Applied
		// wantState.Reviews is filled in from the reviews expected stored.
		wantState state
		wantKept  int
	}{
		{
			name:      "RED rejects the entity and completes the succeeded record only",
			review:    review("app-1", "req-1", "RED", 10),
			want:      entity.Applied{Entities: 1, Recorded: true, Updated: 1, Latest: true},
			wantState: rejected,
			wantKept:  1,
		},
		{
			name:   "GREEN approves the entity",
			review: review("app-1", "req-1", "GREEN", 10),
			want:   entity.Applied{Entities: 1, Recorded: true, Updated: 1, Latest: true},
			wantState: state{
				KYCStatus: "APPROVED",
				Records: map[int]record{
					2: {Status: "succeeded", ReviewStatus: "completed", ReviewAnswer: "GREEN"},
					3: {Status: "pending"},
				},
			},
			wantKept: 1,
		},
		{
			// The replay says GREEN under the first webhook's key: were it
			// written at all, the entity would be approved.
			name:      "a replay changes nothing",
			before:    []entity.Review{review("app-1", "req-1", "RED", 10)},
			review:    review("app-1", "req-1", "GREEN", 11),
			want:      entity.Applied{Entities: 1, Recorded: false},
			wantState: rejected,
			wantKept:  1,
		},
		{
			// Sumsub does not deliver webhooks in order: a GREEN sent before
			// the RED and delivered after it must not undo it.
			name:      "an older review is kept but changes nothing",
			before:    []entity.Review{review("app-1", "req-2", "RED", 20)},
			review:    review("app-1", "req-1", "GREEN", 10),
			want:      entity.Applied{Entities: 1, Recorded: true, Updated: 0, Latest: false},
			wantState: rejected,
			wantKept:  2,
		},
		{
			// The counterpart of the case above, so that it cannot pass by
			// ignoring every second review.
			name:   "a newer review overrides the earlier one",
			before: []entity.Review{review("app-1", "req-1", "RED", 10)},
			review: review("app-1", "req-2", "GREEN", 20),
			want:   entity.Applied{Entities: 1, Recorded: true, Updated: 1, Latest: true},
			wantState: state{
				KYCStatus: "APPROVED",
				Records: map[int]record{
					2: {Status: "succeeded", ReviewStatus: "completed", ReviewAnswer: "GREEN"},
					3: {Status: "pending"},
				},
			},
			wantKept: 2,
		},
		{
			// The import that links the applicant may not have committed
			// yet: LinkApplicant reads the review kept for it.
			name:      "a review of an applicant nobody holds is kept and changes no record",
			review:    review("app-ghost", "req-1", "RED", 10),
			want:      entity.Applied{Entities: 0, Recorded: true, Updated: 0, Latest: true},
			wantState: initial,
			wantKept:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t)
			for _, r := range tt.before {
				if _, err := sumsubhook.Apply(ctx, f.pool, r); err != nil {
					t.Fatalf("Apply(%s): %v", r.EventKey, err)
				}
			}
			got, err := sumsubhook.Apply(ctx, f.pool, tt.review)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Apply result mismatch (-want +got):\n%s", diff)
			}
			want := tt.wantState
			want.Reviews = tt.wantKept
			if diff := cmp.Diff(want, f.state(t)); diff != "" {
				t.Errorf("state after Apply mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyOneTransaction: when the batch records cannot be updated, the
// review is neither stored nor applied to the entity, so that Sumsub's retry
// of the webhook finds nothing recorded and applies it whole.
func TestApplyOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	// The failure is made by the database itself, in this test's own
	// database, at the last statement of the transaction.
	_, err := f.pool.Exec(ctx, `
		CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'batch_records refused by the test'; END $$;
		CREATE TRIGGER refuse BEFORE UPDATE ON batch_records FOR EACH ROW EXECUTE FUNCTION refuse();`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sumsubhook.Apply(ctx, f.pool, review("app-1", "req-1", "RED", 10))
	if err == nil || !strings.Contains(err.Error(), "refused by the test") {
		t.Fatalf("Apply error = %v, want the trigger's refusal", err)
	}
	if diff := cmp.Diff(initial, f.state(t)); diff != "" {
		t.Errorf("state after a failed Apply mismatch (-want +got):\n%s", diff)
	}
}
