-- +goose Up
ALTER TABLE batch_records
    ADD COLUMN queued_at         timestamptz,
    ADD COLUMN answered_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_attempt_at   timestamptz,
    ADD COLUMN review_answer     text;
COMMENT ON COLUMN batch_records.queued_at IS 'When the record entered its batch''s window of queued Sumsub tasks; NULL while it waits outside it.';
COMMENT ON COLUMN batch_records.review_answer IS 'Sumsub''s reviewResult.reviewAnswer (GREEN, RED) when the review was complete at import.';
COMMENT ON COLUMN batch_records.attempts IS 'Sumsub calls started for the record (marked before each call).';
COMMENT ON COLUMN batch_records.answered_attempts IS 'Calls whose answer is known to have left the share token unused or to be the outcome; attempts beyond it were lost (timeouts, crashes).';

-- Pending records of a batch: the window top-up, the reconciler and the
-- completion estimate read only these.
CREATE INDEX batch_records_pending_idx ON batch_records (batch_id, row_number) WHERE status = 'pending';

ALTER TABLE batches ADD COLUMN cancelled_records integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN batches.cancelled_records IS 'Records never sent to Sumsub because the batch was cancelled.';

-- +goose Down
ALTER TABLE batches DROP COLUMN cancelled_records;
DROP INDEX batch_records_pending_idx;
ALTER TABLE batch_records DROP COLUMN queued_at, DROP COLUMN answered_attempts, DROP COLUMN last_attempt_at, DROP COLUMN review_answer;
