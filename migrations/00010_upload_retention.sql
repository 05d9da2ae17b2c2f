-- +goose Up
-- A raw upload holds every share token of its batch: it is deleted from S3
-- UPLOAD_RETENTION after the batch is final, and the batch says when.
ALTER TABLE batches ADD COLUMN file_deleted_at timestamptz;
COMMENT ON COLUMN batches.file_deleted_at IS 'When the raw upload (file_key) was deleted from S3, UPLOAD_RETENTION after the batch was final; NULL: kept.';
CREATE INDEX batches_file_retained_idx ON batches (completed_at) WHERE completed_at IS NOT NULL AND file_deleted_at IS NULL;
-- The view's b.* was expanded when it was made: made again, it shows the new column.
DROP VIEW batch_progress;
CREATE VIEW batch_progress AS
SELECT b.*,
       coalesce(c.succeeded, 0) AS succeeded_records,
       coalesce(c.failed, 0) AS failed_records,
       coalesce(c.cancelled, 0) AS cancelled_records,
       greatest(b.updated_at, c.updated_at) AS progressed_at
FROM batches b
LEFT JOIN LATERAL (
    SELECT sum(succeeded)::integer AS succeeded, sum(failed)::integer AS failed,
           sum(cancelled)::integer AS cancelled, max(updated_at) AS updated_at
    FROM batch_counters WHERE batch_id = b.id
) c ON true;
COMMENT ON VIEW batch_progress IS 'Batches with their record counters summed over batch_counters; progressed_at is the last change of either.';

-- +goose Down
DROP VIEW batch_progress;
DROP INDEX batches_file_retained_idx;
ALTER TABLE batches DROP COLUMN file_deleted_at;
CREATE VIEW batch_progress AS
SELECT b.*,
       coalesce(c.succeeded, 0) AS succeeded_records,
       coalesce(c.failed, 0) AS failed_records,
       coalesce(c.cancelled, 0) AS cancelled_records,
       greatest(b.updated_at, c.updated_at) AS progressed_at
FROM batches b
LEFT JOIN LATERAL (
    SELECT sum(succeeded)::integer AS succeeded, sum(failed)::integer AS failed,
           sum(cancelled)::integer AS cancelled, max(updated_at) AS updated_at
    FROM batch_counters WHERE batch_id = b.id
) c ON true;
