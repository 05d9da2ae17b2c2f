-- +goose Up
-- A batch's outcomes are counted in up to 16 slot rows (row_number % 16), each
-- in the transaction that stores the record: the records of one batch no
-- longer queue for the batch row's lock, which had made them finish one at a
-- time. batch_progress reads a batch with its counters summed.
CREATE TABLE batch_counters (
    batch_id   uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    slot       smallint NOT NULL CHECK (slot BETWEEN 0 AND 15),
    succeeded  integer NOT NULL DEFAULT 0,
    failed     integer NOT NULL DEFAULT 0,
    cancelled  integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, slot)
);
INSERT INTO batch_counters (batch_id, slot, succeeded, failed, cancelled, updated_at)
SELECT id, 0, succeeded_records, failed_records, cancelled_records, updated_at FROM batches
WHERE succeeded_records + failed_records + cancelled_records > 0;
ALTER TABLE batches DROP COLUMN succeeded_records, DROP COLUMN failed_records, DROP COLUMN cancelled_records;

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

-- The records of a batch's window: the top-up counts them at every record.
CREATE INDEX batch_records_queued_idx ON batch_records (batch_id) WHERE status = 'pending' AND queued_at IS NOT NULL;

-- A batch's failed records: the status's error summary groups them.
CREATE INDEX batch_records_failed_idx ON batch_records (batch_id) WHERE status = 'failed';

-- +goose Down
DROP INDEX batch_records_failed_idx;
DROP INDEX batch_records_queued_idx;
DROP VIEW batch_progress;
ALTER TABLE batches
    ADD COLUMN succeeded_records integer NOT NULL DEFAULT 0,
    ADD COLUMN failed_records    integer NOT NULL DEFAULT 0,
    ADD COLUMN cancelled_records integer NOT NULL DEFAULT 0;
UPDATE batches b SET succeeded_records = c.succeeded, failed_records = c.failed, cancelled_records = c.cancelled
FROM (SELECT batch_id, sum(succeeded) AS succeeded, sum(failed) AS failed, sum(cancelled) AS cancelled
      FROM batch_counters GROUP BY batch_id) c
WHERE c.batch_id = b.id;
DROP TABLE batch_counters;
