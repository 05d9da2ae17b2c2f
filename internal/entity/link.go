package entity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/database"
)

// The functions below serve the other owners (ingest's uploads and records,
// sumsubhook's reviews) in their transactions: they take a database.DB and
// name the business explicitly, since no API caller is behind them.

// Missing returns those of the external ids that name no entity of the business.
func Missing(ctx context.Context, db database.DB, business uuid.UUID, externalIDs []uuid.UUID) (map[uuid.UUID]bool, error) {
	rows, err := db.Query(ctx, `
		SELECT x FROM unnest($2::uuid[]) AS x
		WHERE NOT EXISTS (SELECT 1 FROM entities WHERE business_id = $1 AND external_id = x)`, business, externalIDs)
	if err != nil {
		return nil, fmt.Errorf("look up entities: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("look up entities: %w", err)
	}
	missing := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		missing[id] = true
	}
	return missing, nil
}

// CardTokenHeldElsewhere reports whether one of the card tokens (mapped to
// the external id of the entity that is to take it) is held by another
// entity of the business.
func CardTokenHeldElsewhere(ctx context.Context, db database.DB, business uuid.UUID, tokens map[string]uuid.UUID) (bool, error) {
	if len(tokens) == 0 {
		return false, nil
	}
	list := make([]string, 0, len(tokens))
	for t := range tokens {
		list = append(list, t)
	}
	rows, err := db.Query(ctx, `
		SELECT card_processor_public_token, external_id FROM entities
		WHERE business_id = $1 AND card_processor_public_token = ANY($2)`, business, list)
	if err != nil {
		return false, fmt.Errorf("look up card tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var token string
		var holder uuid.UUID
		if err := rows.Scan(&token, &holder); err != nil {
			return false, fmt.Errorf("look up card tokens: %w", err)
		}
		if holder != tokens[token] {
			return true, nil
		}
	}
	return false, rows.Err()
}

// Link is what a successful import sets on an entity.
type Link struct {
	Business    uuid.UUID
	ExternalID  uuid.UUID
	ApplicantID string
	// KYCStatus is the status the import's own review implies (PENDING,
	// APPROVED or REJECTED); a review recorded before the link wins.
	KYCStatus string
	// CardToken is the record's card processor token; empty: none.
	CardToken string
}

// Linked says how LinkApplicant went.
type Linked struct {
	// Found is false when the business has no such entity (deleted while
	// the import was in flight): nothing was linked.
	Found bool
	// CardTaken is true when the record asked for a card token that another
	// entity of the business holds: the applicant was linked, the token not.
	CardTaken bool
	// ReviewAnswer is the answer (GREEN, RED) of the latest review Sumsub
	// sent for the applicant before this link, if any.
	ReviewAnswer string
}

// linkSQL sets the imported applicant on an entity: $1 the applicant, $2
// the KYC status the import implies, $3 the card token (NULL: none), $4 the
// business, $5 the external id. It returns whether the card token is the
// entity's now, and the answer of the latest review recorded before it.
var linkSQL = `
	WITH review AS (
		SELECT review_answer FROM sumsub_reviews WHERE applicant_id = $1
		ORDER BY reviewed_at DESC NULLS LAST, received_at DESC LIMIT 1
	)
	UPDATE entities e SET sumsub_applicant_id = $1, updated_at = now(),
		kyc_status = coalesce((SELECT ` + kycStatusSQL("review_answer") + ` FROM review), $2),
		card_processor_public_token = CASE
			WHEN $3::text IS NULL OR EXISTS (
				SELECT 1 FROM entities o WHERE o.business_id = e.business_id
				  AND o.card_processor_public_token = $3 AND o.id <> e.id)
			THEN e.card_processor_public_token
			ELSE $3 END
	WHERE e.business_id = $4 AND e.external_id = $5
	RETURNING $3::text IS NULL OR e.card_processor_public_token IS NOT DISTINCT FROM $3,
		(SELECT review_answer FROM review)`

// LinkApplicant sets the imported applicant on the entity, with its KYC
// status and its card token, in db (the transaction storing the record's
// outcome). A review webhook can beat the import's commit (Sumsub is fast):
// a review recorded before the link decides the status. The card token is
// taken only if no other entity of the business holds it; two entities
// taking one token at the same instant violate the unique index, and the
// caller's retry finds the token held.
func LinkApplicant(ctx context.Context, db database.DB, l Link) (Linked, error) {
	b := &pgx.Batch{}
	var res Linked
	QueueLinkApplicant(b, l, &res)
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return Linked{}, err
	}
	return res, nil
}

// QueueLinkApplicant queues LinkApplicant's statement on b, for a caller
// that sends it in one round trip with statements of its own (the record's
// outcome); res receives the result when b's results are read.
func QueueLinkApplicant(b *pgx.Batch, l Link, res *Linked) {
	b.Queue(linkSQL, l.ApplicantID, l.KYCStatus, nullable(l.CardToken), l.Business, l.ExternalID).QueryRow(func(row pgx.Row) error {
		var cardOK bool
		var review *string
		err := row.Scan(&cardOK, &review)
		if errors.Is(err, pgx.ErrNoRows) {
			*res = Linked{}
			return nil
		}
		if err != nil {
			return fmt.Errorf("link applicant to entity %s: %w", l.ExternalID, err)
		}
		*res = Linked{Found: true, CardTaken: !cardOK}
		if review != nil {
			res.ReviewAnswer = *review
		}
		return nil
	})
}

// nullable stores an empty optional value as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
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

// Applied says what ApplyReview did.
type Applied struct {
	// Entities counts the entities holding the applicant, in any business.
	Entities int
	// Recorded is false for a replayed webhook: nothing was written.
	Recorded bool
	// Updated counts the entities whose KYC status changed.
	Updated int
	// Latest is true when no newer review of the applicant is recorded:
	// the review is the applicant's current one.
	Latest bool
}

// kycStatus is the entity status of each review answer: the one mapping of
// Sumsub's answers to ours, in Go (KYCStatus) and in SQL (kycStatusSQL).
var kycStatus = map[string]string{"GREEN": "APPROVED", "RED": "REJECTED"}

// KYCPending is the KYC status of an entity whose review is not complete.
const KYCPending = "PENDING"

// KYCStatus is the KYC status a Sumsub review implies: APPROVED or REJECTED
// once it is completed with a GREEN or RED answer, PENDING until then.
func KYCStatus(reviewStatus, answer string) string {
	if s := kycStatus[answer]; s != "" && reviewStatus == "completed" {
		return s
	}
	return KYCPending
}

// kycStatusSQL is kycStatus as an SQL expression of the answer column col
// (NULL for an answer that decides nothing).
func kycStatusSQL(col string) string {
	return fmt.Sprintf("CASE %s WHEN 'GREEN' THEN '%s' WHEN 'RED' THEN '%s' END", col, kycStatus["GREEN"], kycStatus["RED"])
}

// ValidAnswer reports whether a review answer decides a KYC status.
func ValidAnswer(answer string) bool { return kycStatus[answer] != "" }

// ApplyReview records r and sets the KYC status of every entity holding its
// applicant, in db. A review already recorded (a replay) writes nothing; a
// review older than one recorded before is kept but changes nothing; a
// review of an applicant no entity holds yet is kept for the import that
// links it (LinkApplicant reads it). Reviews are ordered as LinkApplicant
// orders them: by their time, an undated one (Sumsub's createdAtMs could not
// be read) older than any dated one, then by arrival.
func ApplyReview(ctx context.Context, db database.DB, r Review) (Applied, error) {
	var res Applied
	var reviewedAt *time.Time
	if !r.ReviewedAt.IsZero() {
		reviewedAt = &r.ReviewedAt
	}
	rows, err := db.Query(ctx, `SELECT id FROM entities WHERE sumsub_applicant_id = $1 FOR UPDATE`, r.ApplicantID)
	if err != nil {
		return res, fmt.Errorf("lock entities of applicant %s: %w", r.ApplicantID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return res, fmt.Errorf("lock entities of applicant %s: %w", r.ApplicantID, err)
	}
	res.Entities = len(ids)
	tag, err := db.Exec(ctx, `
		INSERT INTO sumsub_reviews (applicant_id, event_key, review_answer, reject_type, level_name, correlation_id, reviewed_at)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), $7)
		ON CONFLICT (applicant_id, event_key) DO NOTHING`,
		r.ApplicantID, r.EventKey, r.Answer, r.RejectType, r.LevelName, r.CorrelationID, reviewedAt)
	if err != nil {
		return res, fmt.Errorf("record review of applicant %s: %w", r.ApplicantID, err)
	}
	if res.Recorded = tag.RowsAffected() == 1; !res.Recorded {
		return res, nil
	}
	err = db.QueryRow(ctx, `
		WITH latest AS (
			SELECT NOT EXISTS (
				SELECT 1 FROM sumsub_reviews
				WHERE applicant_id = $1 AND reviewed_at > coalesce($3, '-infinity'::timestamptz)) AS yes
		), updated AS (
			UPDATE entities SET kyc_status = $2, updated_at = now()
			WHERE sumsub_applicant_id = $1 AND kyc_status <> $2 AND (SELECT yes FROM latest)
			RETURNING 1
		)
		SELECT (SELECT yes FROM latest), (SELECT count(*) FROM updated)`,
		r.ApplicantID, kycStatus[r.Answer], reviewedAt).Scan(&res.Latest, &res.Updated)
	if err != nil {
		return res, fmt.Errorf("apply review of applicant %s: %w", r.ApplicantID, err)
	}
	return res, nil
}
