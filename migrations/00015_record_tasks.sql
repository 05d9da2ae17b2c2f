-- +goose Up
-- Each attempt of a record is an Asynq task again (record:import in queue
-- sumsub), fed by the fair schedule a few at a time: the record knows whether
-- a task of it is in the queue, and which feed it is. A task of an older feed
-- (one the reconciler took for lost and replaced) finds its feed superseded
-- and does nothing, so a record is never sent by two tasks. The wait before a
-- retry is the task's own (Asynq's retry), so retry_at goes.
ALTER TABLE batch_records
    ADD COLUMN queued_at timestamptz,
    ADD COLUMN feeds integer NOT NULL DEFAULT 0,
    DROP COLUMN retry_at;
COMMENT ON COLUMN batch_records.queued_at IS 'When a task of the record was put in the sumsub queue, or last found there by the reconciler; NULL while the record waits in the fair schedule (or is final).';
COMMENT ON COLUMN batch_records.feeds IS 'How many tasks of the record were put in the sumsub queue: the task of the last one (record:<batch>:<row>:<feeds>) alone may call Sumsub.';

-- The records with a task in the queue, for the reconciler: the window and
-- the records waiting out a retry, never the backlog.
CREATE INDEX batch_records_queued_idx ON batch_records (queued_at) WHERE status = 'pending' AND queued_at IS NOT NULL;

-- +goose Down
DROP INDEX batch_records_queued_idx;
ALTER TABLE batch_records DROP COLUMN queued_at, DROP COLUMN feeds, ADD COLUMN retry_at timestamptz;
