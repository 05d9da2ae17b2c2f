package sumsubhook

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store applies reviews to entities.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Review is a completed review, as an applicantReviewed webhook tells it.
type Review struct {
	ApplicantID string
	// EventKey names this webhook among the applicant's: a replay has the same.
	EventKey      string
	Answer        string // GREEN or RED
	RejectType    string
	LevelName     string
	CorrelationID string
	// ReviewedAt is the webhook's createdAtMs; zero when it could not be read.
	ReviewedAt time.Time
}

// Result says what Apply did.
type Result struct {
	// Entities counts the entities holding the applicant, in any business.
	Entities int
	// Recorded is false for a replayed webhook: nothing was written.
	Recorded bool
	// Updated counts the entities whose KYC status changed.
	Updated int
}

// kycStatus is the entity status of each review answer.
var kycStatus = map[string]string{"GREEN": "APPROVED", "RED": "REJECTED"}

// Apply records r and sets the KYC status of every entity holding its
// applicant, in one transaction. A review already recorded (a replay) writes
// nothing; a review older than one recorded before is kept but does not
// change the entities; a review of an applicant no entity holds yet is kept
// for the import that links it.
func (s *Store) Apply(ctx context.Context, r Review) (Result, error) {
	var res Result
	var reviewedAt *time.Time
	if !r.ReviewedAt.IsZero() {
		reviewedAt = &r.ReviewedAt
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM entities WHERE sumsub_applicant_id = $1 FOR UPDATE`, r.ApplicantID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
		if err != nil {
			return err
		}
		// A review of an applicant no entity holds yet is kept all the same:
		// the worker that links the applicant applies it (the webhook can
		// beat the import's own transaction).
		res.Entities = len(ids)
		tag, err := tx.Exec(ctx, `
			INSERT INTO sumsub_reviews (applicant_id, event_key, review_answer, reject_type, level_name, correlation_id, reviewed_at)
			VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), $7)
			ON CONFLICT (applicant_id, event_key) DO NOTHING`,
			r.ApplicantID, r.EventKey, r.Answer, r.RejectType, r.LevelName, r.CorrelationID, reviewedAt)
		if err != nil {
			return err
		}
		if res.Recorded = tag.RowsAffected() == 1; !res.Recorded {
			return nil
		}
		tag, err = tx.Exec(ctx, `
			UPDATE entities SET kyc_status = $2, updated_at = now()
			WHERE sumsub_applicant_id = $1 AND kyc_status <> $2
			  AND NOT EXISTS (SELECT 1 FROM sumsub_reviews
			                  WHERE applicant_id = $1 AND reviewed_at > $3)`,
			r.ApplicantID, kycStatus[r.Answer], reviewedAt)
		if err != nil {
			return err
		}
		res.Updated = int(tag.RowsAffected())
		// The batch records that imported the applicant show the review too
		// (their results and reports), unless a newer review is recorded.
		_, err = tx.Exec(ctx, `
			UPDATE batch_records SET review_status = 'completed', review_answer = $2
			WHERE applicant_id = $1 AND status = 'succeeded'
			  AND review_answer IS DISTINCT FROM $2
			  AND NOT EXISTS (SELECT 1 FROM sumsub_reviews
			                  WHERE applicant_id = $1 AND reviewed_at > $3)`,
			r.ApplicantID, r.Answer, reviewedAt)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply review of applicant %s: %w", r.ApplicantID, err)
	}
	return res, nil
}
