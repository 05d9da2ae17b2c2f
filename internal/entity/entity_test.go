package entity_test

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
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
)

// Each top-level test gets its own database; its subtests share it and stay
// apart by creating their own businesses and applicant ids, so that they can
// run in parallel and still assert on exactly the rows they wrote.

// newBusiness creates a business with a name no other test uses and returns
// its id and a context acting for it, as the HTTP layer would.
func newBusiness(tb testing.TB, pool *pgxpool.Pool) (uuid.UUID, context.Context) {
	tb.Helper()
	id, err := auth.NewStore(pool).EnsureBusiness(context.Background(), tb.Name()+" "+uuid.NewString())
	if err != nil {
		tb.Fatal(err)
	}
	return id, auth.WithBusiness(context.Background(), id)
}

// newEntity creates an INDIVIDUAL entity of the business with a fresh
// external id and, when applicant is not empty, links it to the applicant
// with the KYC status and card token, as an import would.
func newEntity(tb testing.TB, pool *pgxpool.Pool, business uuid.UUID, applicant, kyc, card string) entity.Entity {
	tb.Helper()
	ctx := auth.WithBusiness(context.Background(), business)
	e, err := entity.NewStore(pool).Create(ctx, uuid.New(), "INDIVIDUAL")
	if err != nil {
		tb.Fatal(err)
	}
	if applicant == "" {
		return e
	}
	linked, err := entity.LinkApplicant(ctx, pool, entity.Link{
		Business: business, ExternalID: e.ExternalID, ApplicantID: applicant, KYCStatus: kyc, CardToken: card,
	})
	if err != nil || !linked.Found || linked.CardTaken {
		tb.Fatalf("link %s to applicant %s: %+v, %v", e.ExternalID, applicant, linked, err)
	}
	return get(tb, pool, business, e.ID)
}

// get reads an entity back through the Store, the way the API does.
func get(tb testing.TB, pool *pgxpool.Pool, business, ref uuid.UUID) entity.Entity {
	tb.Helper()
	e, err := entity.NewStore(pool).Get(auth.WithBusiness(context.Background(), business), ref)
	if err != nil {
		tb.Fatalf("get %s: %v", ref, err)
	}
	return e
}

// applyReview records a review that comes before the step under test.
func applyReview(tb testing.TB, pool *pgxpool.Pool, r entity.Review) {
	tb.Helper()
	if _, err := entity.ApplyReview(context.Background(), pool, r); err != nil {
		tb.Fatal(err)
	}
}

// newApplicant returns an applicant id no other test uses: reviews are
// matched by applicant id across businesses, so tests must not share them.
func newApplicant() string { return "app-" + uuid.NewString() }

// t0 is the review time the ApplyReview and LinkApplicant tests count from.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestCreate(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	business, ctx := newBusiness(t, pool)
	store := entity.NewStore(pool)

	for _, typ := range []string{"INDIVIDUAL", "BUSINESS"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			external := uuid.New()
			got, err := store.Create(ctx, external, typ)
			if err != nil {
				t.Fatal(err)
			}
			// A new entity has no applicant nor card yet: the NULL columns
			// must come back as empty strings, not fail the scan.
			want := entity.Entity{ExternalID: external, Type: typ, BusinessID: business, KYCStatus: "NOT_STARTED"}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(entity.Entity{}, "ID", "CreatedAt", "UpdatedAt")); diff != "" {
				t.Errorf("Create (-want +got):\n%s", diff)
			}
			if got.ID == uuid.Nil || got.ID == external || got.CreatedAt.IsZero() {
				t.Errorf("Create: id %s (external %s), created at %s; want a new id and a creation time", got.ID, external, got.CreatedAt)
			}
			if diff := cmp.Diff(got, get(t, pool, business, got.ID)); diff != "" {
				t.Errorf("Get after Create (-want +got):\n%s", diff)
			}
		})
	}

	for _, typ := range []string{"", "individual", "PERSON"} {
		t.Run(fmt.Sprintf("invalid type %q", typ), func(t *testing.T) {
			t.Parallel()
			external := uuid.New()
			if _, err := store.Create(ctx, external, typ); !errors.Is(err, entity.ErrInvalidType) {
				t.Errorf("Create with type %q: %v, want %v", typ, err, entity.ErrInvalidType)
			}
			if missing, err := entity.Missing(ctx, pool, business, []uuid.UUID{external}); err != nil || !missing[external] {
				t.Errorf("Missing after a refused Create: %v, %v; want it missing", missing, err)
			}
		})
	}
}

// TestCreateDuplicate: the external id is the business's own name for the
// entity, unique within the business but free for other businesses.
func TestCreateDuplicate(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	store := entity.NewStore(pool)
	business, ctx := newBusiness(t, pool)
	_, otherCtx := newBusiness(t, pool)

	external := uuid.New()
	first, err := store.Create(ctx, external, "INDIVIDUAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, external, "BUSINESS"); !errors.Is(err, entity.ErrDuplicate) {
		t.Errorf("second Create with the same external id: %v, want %v", err, entity.ErrDuplicate)
	}
	if diff := cmp.Diff(first, get(t, pool, business, external)); diff != "" {
		t.Errorf("Get after the refused duplicate (-want +got):\n%s", diff)
	}
	if _, err := store.Create(otherCtx, external, "BUSINESS"); err != nil {
		t.Errorf("another business's Create with the same external id: %v, want success", err)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	store := entity.NewStore(pool)
	business, ctx := newBusiness(t, pool)
	other, _ := newBusiness(t, pool)

	a := newEntity(t, pool, business, "", "", "")
	b := newEntity(t, pool, business, "", "", "")
	// c's external id is b's id: a ref naming both must find b, since an id
	// match wins over an external-id match.
	c, err := store.Create(ctx, b.ID, "BUSINESS")
	if err != nil {
		t.Fatal(err)
	}
	// Linking b rewrites its row after c's, so that a scan meets c first and
	// only the id preference, not the order of insertion, can pick b.
	if _, err := entity.LinkApplicant(ctx, pool, entity.Link{
		Business: business, ExternalID: b.ExternalID, ApplicantID: newApplicant(), KYCStatus: "PENDING",
	}); err != nil {
		t.Fatal(err)
	}
	b = get(t, pool, business, b.ExternalID)
	foreign := newEntity(t, pool, other, "", "", "")

	tests := []struct {
		name    string
		ref     uuid.UUID
		want    entity.Entity
		wantErr error
	}{
		{name: "by id", ref: a.ID, want: a},
		{name: "by external id", ref: a.ExternalID, want: a},
		{name: "id wins over external id", ref: b.ID, want: b},
		{name: "id of the entity whose external id is another's id", ref: c.ID, want: c},
		{name: "another business's entity by id", ref: foreign.ID, wantErr: entity.ErrNotFound},
		{name: "another business's entity by external id", ref: foreign.ExternalID, wantErr: entity.ErrNotFound},
		{name: "unknown", ref: uuid.New(), wantErr: entity.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := store.Get(ctx, tt.ref)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%s): error %v, want %v", tt.ref, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Get(%s) (-want +got):\n%s", tt.ref, diff)
			}
		})
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	store := entity.NewStore(pool)
	business, ctx := newBusiness(t, pool)
	other, _ := newBusiness(t, pool)

	// Each Create is its own statement, so created_at grows with each and
	// newest first is the reverse of the order of creation.
	var newestFirst []uuid.UUID
	for range 5 {
		newestFirst = append([]uuid.UUID{newEntity(t, pool, business, "", "", "").ID}, newestFirst...)
	}
	// Another business's entity, the newest of all, must appear on no page.
	newEntity(t, pool, other, "", "", "")

	for _, limit := range []int{1, 2, 3, 5, 6} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			t.Parallel()
			var want [][]uuid.UUID
			for rest := newestFirst; len(rest) > 0; rest = rest[min(limit, len(rest)):] {
				want = append(want, rest[:min(limit, len(rest))])
			}
			var got [][]uuid.UUID
			for cursor := ""; ; {
				list, next, err := store.List(ctx, limit, cursor)
				if err != nil {
					t.Fatalf("List(%d, %q): %v", limit, cursor, err)
				}
				var page []uuid.UUID
				for _, e := range list {
					page = append(page, e.ID)
				}
				got = append(got, page)
				if next == "" {
					break
				}
				if len(got) > len(newestFirst) {
					t.Fatalf("List(%d) still returns a next cursor after %d pages", limit, len(got))
				}
				cursor = next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pages of %d, newest first (-want +got):\n%s", limit, diff)
			}
		})
	}

	for name, cursor := range map[string]string{
		"not base64":         "!!not base64!!",
		"not JSON":           base64.RawURLEncoding.EncodeToString([]byte("not json")),
		"time not parseable": base64.RawURLEncoding.EncodeToString([]byte(`{"t":"yesterday","i":"x"}`)),
	} {
		t.Run("bad cursor "+name, func(t *testing.T) {
			t.Parallel()
			list, next, err := store.List(ctx, 10, cursor)
			if !errors.Is(err, entity.ErrBadCursor) || list != nil || next != "" {
				t.Errorf("List(10, %q): %d entities, next %q, error %v; want none and %v", cursor, len(list), next, err, entity.ErrBadCursor)
			}
		})
	}
}

func TestLinkApplicant(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)

	tests := []struct {
		name string
		// ownCard is a card token the entity holds from an earlier link.
		ownCard string
		// sameBusinessCard and otherBusinessCard are card tokens another
		// entity holds, in the entity's business and in another business.
		sameBusinessCard, otherBusinessCard string
		// reviews are recorded for the applicant before the link.
		reviews []entity.Review
		// kyc and card are the link's KYC status and card token.
		kyc, card  string
		want       entity.Linked
		wantStatus string
		wantCard   string
	}{
		{
			name: "status and card", kyc: "PENDING", card: "card-1",
			want: entity.Linked{Found: true}, wantStatus: "PENDING", wantCard: "card-1",
		},
		{
			name: "no card", kyc: "APPROVED",
			want: entity.Linked{Found: true}, wantStatus: "APPROVED",
		},
		{
			name: "card held by another entity of the business", sameBusinessCard: "card-1", kyc: "PENDING", card: "card-1",
			want: entity.Linked{Found: true, CardTaken: true}, wantStatus: "PENDING",
		},
		{
			name: "card held in another business only", otherBusinessCard: "card-1", kyc: "PENDING", card: "card-1",
			want: entity.Linked{Found: true}, wantStatus: "PENDING", wantCard: "card-1",
		},
		{
			// A retried import links the same entity with the same card again.
			name: "card already held by the entity", ownCard: "card-1", kyc: "PENDING", card: "card-1",
			want: entity.Linked{Found: true}, wantStatus: "PENDING", wantCard: "card-1",
		},
		{
			name: "a link without card keeps the entity's card", ownCard: "card-1", kyc: "APPROVED",
			want: entity.Linked{Found: true}, wantStatus: "APPROVED", wantCard: "card-1",
		},
		{
			name:    "RED review before the link decides",
			reviews: []entity.Review{{EventKey: "k1", Answer: "RED", ReviewedAt: t0}},
			kyc:     "PENDING", card: "card-1",
			want: entity.Linked{Found: true, ReviewAnswer: "RED"}, wantStatus: "REJECTED", wantCard: "card-1",
		},
		{
			name:    "GREEN review before the link decides",
			reviews: []entity.Review{{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0}},
			kyc:     "PENDING",
			want:    entity.Linked{Found: true, ReviewAnswer: "GREEN"}, wantStatus: "APPROVED",
		},
		{
			// Reviews are ranked by their own time, not by arrival.
			name: "the newest review before the link decides",
			reviews: []entity.Review{
				{EventKey: "k2", Answer: "RED", ReviewedAt: t0.Add(time.Hour)},
				{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0},
			},
			kyc:  "PENDING",
			want: entity.Linked{Found: true, ReviewAnswer: "RED"}, wantStatus: "REJECTED",
		},
		{
			// An undated review ranks below every dated one, here as in
			// ApplyReview (TestApplyReview).
			name: "a dated review wins over a later undated one",
			reviews: []entity.Review{
				{EventKey: "k1", Answer: "RED", ReviewedAt: t0},
				{EventKey: "k2", Answer: "GREEN"},
			},
			kyc:  "PENDING",
			want: entity.Linked{Found: true, ReviewAnswer: "RED"}, wantStatus: "REJECTED",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			business, _ := newBusiness(t, pool)
			applicant := newApplicant()
			// An entity with a card of its own got it from an earlier link
			// to the same applicant, as a retried import would.
			earlier := ""
			if tt.ownCard != "" {
				earlier = applicant
			}
			e := newEntity(t, pool, business, earlier, "PENDING", tt.ownCard)
			var holder entity.Entity
			if tt.sameBusinessCard != "" {
				holder = newEntity(t, pool, business, newApplicant(), "PENDING", tt.sameBusinessCard)
			}
			if tt.otherBusinessCard != "" {
				other, _ := newBusiness(t, pool)
				newEntity(t, pool, other, newApplicant(), "PENDING", tt.otherBusinessCard)
			}
			for _, r := range tt.reviews {
				r.ApplicantID = applicant
				applyReview(t, pool, r)
			}

			got, err := entity.LinkApplicant(context.Background(), pool, entity.Link{
				Business: business, ExternalID: e.ExternalID, ApplicantID: applicant, KYCStatus: tt.kyc, CardToken: tt.card,
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("LinkApplicant (-want +got):\n%s", diff)
			}
			want := e
			want.SumsubApplicantID, want.KYCStatus, want.CardProcessorPublicToken = applicant, tt.wantStatus, tt.wantCard
			after := get(t, pool, business, e.ID)
			if diff := cmp.Diff(want, after, cmpopts.IgnoreFields(entity.Entity{}, "UpdatedAt")); diff != "" {
				t.Errorf("entity after the link (-want +got):\n%s", diff)
			}
			if !after.UpdatedAt.After(e.UpdatedAt) {
				t.Errorf("updated at %s after the link, want after %s", after.UpdatedAt, e.UpdatedAt)
			}
			if holder.ID != uuid.Nil {
				if diff := cmp.Diff(holder, get(t, pool, business, holder.ID)); diff != "" {
					t.Errorf("the card's holder changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestLinkApplicantMissingEntity: an entity deleted while its import was in
// flight is reported, and the link touches no other business's entity with
// the same external id.
func TestLinkApplicantMissingEntity(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	business, ctx := newBusiness(t, pool)
	other, _ := newBusiness(t, pool)
	foreign := newEntity(t, pool, other, "", "", "")

	got, err := entity.LinkApplicant(ctx, pool, entity.Link{
		Business: business, ExternalID: foreign.ExternalID, ApplicantID: newApplicant(), KYCStatus: "PENDING", CardToken: "card-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(entity.Linked{}, got); diff != "" {
		t.Errorf("LinkApplicant (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(foreign, get(t, pool, other, foreign.ID)); diff != "" {
		t.Errorf("another business's entity with the external id changed (-want +got):\n%s", diff)
	}
	if _, err := entity.NewStore(pool).Get(ctx, foreign.ExternalID); !errors.Is(err, entity.ErrNotFound) {
		t.Errorf("Get in the linking business: %v, want %v", err, entity.ErrNotFound)
	}
}

// TestApplyReview: each case starts from an applicant linked PENDING to one
// entity in each of two businesses, plus a bystander entity of the first
// business linked to another applicant, records the reviews before, then
// applies the review under test.
func TestApplyReview(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)

	tests := []struct {
		name   string
		before []entity.Review
		review entity.Review
		// nobody sends the review for an applicant no entity holds.
		nobody bool
		want   entity.Applied
		// wantStatus is the status of the two holders afterwards.
		wantStatus string
	}{
		{
			name:   "first review sets every holder in every business",
			review: entity.Review{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0},
			want:   entity.Applied{Entities: 2, Recorded: true, Updated: 2, Latest: true}, wantStatus: "APPROVED",
		},
		{
			name:   "RED rejects",
			review: entity.Review{EventKey: "k1", Answer: "RED", RejectType: "FINAL", ReviewedAt: t0},
			want:   entity.Applied{Entities: 2, Recorded: true, Updated: 2, Latest: true}, wantStatus: "REJECTED",
		},
		{
			// The replay carries another answer so that a write would show.
			name:   "replay with the same event key changes nothing",
			before: []entity.Review{{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0}},
			review: entity.Review{EventKey: "k1", Answer: "RED", ReviewedAt: t0.Add(time.Hour)},
			want:   entity.Applied{Entities: 2}, wantStatus: "APPROVED",
		},
		{
			name:   "older review is kept but changes nothing",
			before: []entity.Review{{EventKey: "k2", Answer: "RED", ReviewedAt: t0.Add(time.Hour)}},
			review: entity.Review{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0},
			want:   entity.Applied{Entities: 2, Recorded: true}, wantStatus: "REJECTED",
		},
		{
			name:   "newer review overrides",
			before: []entity.Review{{EventKey: "k1", Answer: "RED", ReviewedAt: t0}},
			review: entity.Review{EventKey: "k2", Answer: "GREEN", ReviewedAt: t0.Add(time.Hour)},
			want:   entity.Applied{Entities: 2, Recorded: true, Updated: 2, Latest: true}, wantStatus: "APPROVED",
		},
		{
			name:   "same answer again updates no entity",
			before: []entity.Review{{EventKey: "k1", Answer: "GREEN", ReviewedAt: t0}},
			review: entity.Review{EventKey: "k2", Answer: "GREEN", ReviewedAt: t0.Add(time.Hour)},
			want:   entity.Applied{Entities: 2, Recorded: true, Latest: true}, wantStatus: "APPROVED",
		},
		{
			// An undated review is older than any dated one, as
			// LinkApplicant ranks it: kept, but it changes nothing, so an
			// entity linked before it and one linked after agree.
			name:   "undated review after a dated one is kept, not applied",
			before: []entity.Review{{EventKey: "k1", Answer: "RED", ReviewedAt: t0}},
			review: entity.Review{EventKey: "k2", Answer: "GREEN"},
			want:   entity.Applied{Entities: 2, Recorded: true}, wantStatus: "REJECTED",
		},
		{
			// A recorded undated review is never newer than a dated one.
			name:   "dated review after an undated one applies",
			before: []entity.Review{{EventKey: "k1", Answer: "GREEN"}},
			review: entity.Review{EventKey: "k2", Answer: "RED", ReviewedAt: t0},
			want:   entity.Applied{Entities: 2, Recorded: true, Updated: 2, Latest: true}, wantStatus: "REJECTED",
		},
		{
			// TestLinkApplicant shows a later link reads such a review.
			name:   "applicant no entity holds is recorded",
			nobody: true,
			review: entity.Review{EventKey: "k1", Answer: "RED", ReviewedAt: t0},
			want:   entity.Applied{Recorded: true, Latest: true}, wantStatus: "PENDING",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first, _ := newBusiness(t, pool)
			second, _ := newBusiness(t, pool)
			applicant := newApplicant()
			holders := map[uuid.UUID]entity.Entity{
				first:  newEntity(t, pool, first, applicant, "PENDING", "card-1"),
				second: newEntity(t, pool, second, applicant, "PENDING", "card-1"),
			}
			bystander := newEntity(t, pool, first, newApplicant(), "PENDING", "")
			for _, r := range tt.before {
				r.ApplicantID = applicant
				applyReview(t, pool, r)
			}

			r := tt.review
			r.ApplicantID = applicant
			if tt.nobody {
				r.ApplicantID = newApplicant()
			}
			got, err := entity.ApplyReview(context.Background(), pool, r)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ApplyReview (-want +got):\n%s", diff)
			}
			for business, e := range holders {
				if got := get(t, pool, business, e.ID).KYCStatus; got != tt.wantStatus {
					t.Errorf("holder in business %s: KYC status %s, want %s", business, got, tt.wantStatus)
				}
			}
			if diff := cmp.Diff(bystander, get(t, pool, first, bystander.ID)); diff != "" {
				t.Errorf("entity of another applicant changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	business, _ := newBusiness(t, pool)
	other, _ := newBusiness(t, pool)
	e := newEntity(t, pool, business, "", "", "")
	foreign := newEntity(t, pool, other, "", "", "")
	unknown := uuid.New()
	// Missing answers for external ids only: an entity's id is ours, not the business's.
	got, err := entity.Missing(context.Background(), pool, business, []uuid.UUID{e.ExternalID, unknown, foreign.ExternalID, e.ID, e.ExternalID})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uuid.UUID]bool{unknown: true, foreign.ExternalID: true, e.ID: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Missing (-want +got):\n%s", diff)
	}
}

func TestCardTokenHeldElsewhere(t *testing.T) {
	t.Parallel()
	pool := dbtest.Pool(t)
	business, _ := newBusiness(t, pool)
	other, _ := newBusiness(t, pool)
	holder := newEntity(t, pool, business, newApplicant(), "PENDING", "held")
	newEntity(t, pool, other, newApplicant(), "PENDING", "foreign")

	tests := []struct {
		name   string
		tokens map[string]uuid.UUID
		want   bool
	}{
		{name: "no tokens"},
		{name: "token held by the entity taking it", tokens: map[string]uuid.UUID{"held": holder.ExternalID}},
		{name: "token held by another entity", tokens: map[string]uuid.UUID{"held": uuid.New()}, want: true},
		{name: "token nobody holds", tokens: map[string]uuid.UUID{"free": uuid.New()}},
		{name: "token held in another business only", tokens: map[string]uuid.UUID{"foreign": uuid.New()}},
		{
			name:   "one of several held by another entity",
			tokens: map[string]uuid.UUID{"free": uuid.New(), "foreign": uuid.New(), "held": uuid.New()},
			want:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := entity.CardTokenHeldElsewhere(context.Background(), pool, business, tt.tokens)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("CardTokenHeldElsewhere(%v) = %v, want %v", tt.tokens, got, tt.want)
			}
		})
	}
}
