-- +goose Up
CREATE TABLE sumsub_reviews (
    applicant_id   text NOT NULL,
    event_key      text NOT NULL,
    review_answer  text NOT NULL CHECK (review_answer IN ('GREEN', 'RED')),
    reject_type    text,
    level_name     text,
    correlation_id text,
    reviewed_at    timestamptz,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (applicant_id, event_key)
);
COMMENT ON TABLE sumsub_reviews IS 'Completed reviews Sumsub reported by applicantReviewed webhooks; a replayed webhook finds its row and changes nothing.';
COMMENT ON COLUMN sumsub_reviews.event_key IS 'Names one webhook of the applicant: its correlationId, else its createdAtMs, else a SHA-256 of its body.';
COMMENT ON COLUMN sumsub_reviews.reject_type IS 'reviewRejectType of a RED review: FINAL or RETRY.';
COMMENT ON COLUMN sumsub_reviews.reviewed_at IS 'createdAtMs of the webhook (UTC), when it could be read: an older review never overrides a newer one.';

-- Webhooks find entities by applicant id, in any business.
CREATE INDEX entities_sumsub_applicant_idx ON entities (sumsub_applicant_id) WHERE sumsub_applicant_id IS NOT NULL;

-- ... and the batch records that imported the applicant.
CREATE INDEX batch_records_applicant_idx ON batch_records (applicant_id) WHERE applicant_id IS NOT NULL;

-- +goose Down
DROP INDEX batch_records_applicant_idx;
DROP INDEX entities_sumsub_applicant_idx;
DROP TABLE sumsub_reviews;
