-- +goose Up
-- A report's build task is enqueued when its turn comes, no longer when it
-- is initiated: the feeder (internal/reports) keeps a few reports queued or
-- processing in all businesses together and enqueues the task of the next
-- pending report in the businesses' turns, so every task builds the report
-- it names. A queued report's task is in Asynq (waiting, or waiting out a
-- retry); the API shows it as pending, as before.
ALTER TABLE reports DROP CONSTRAINT reports_status_check;
ALTER TABLE reports ADD CONSTRAINT reports_status_check CHECK (status IN ('pending', 'queued', 'processing', 'success', 'failed'));
COMMENT ON COLUMN reports.status IS 'pending: initiated, waiting for its turn; queued: its build task enqueued (shown as pending); processing: being built; success or failed: final.';

-- The turn is taken when the task is enqueued, so the turn order reads the
-- time of that, and the request's trace is kept for the task enqueued later.
ALTER TABLE reports ADD COLUMN queued_at timestamptz, ADD COLUMN traceparent text;
COMMENT ON COLUMN reports.queued_at IS 'When its build task was enqueued (its turn); a business''s latest decides its next turn among the pending reports.';
COMMENT ON COLUMN reports.traceparent IS 'W3C traceparent of the initiate request when the API traced it: the parent of the build task enqueued at its turn. NULL: not traced.';
COMMENT ON COLUMN reports.build_started_at IS 'When its build last started (its task ran); its turn was taken at queued_at.';

-- Reports built before took their turn as their build started. Pending
-- reports already have a build task in Redis (one was enqueued at each
-- initiate): they are queued, with the turn of their initiate; the
-- reconciler re-enqueues those whose task another report's build used up.
UPDATE reports SET queued_at = build_started_at WHERE build_started_at IS NOT NULL;
UPDATE reports SET status = 'queued', queued_at = created_at WHERE status = 'pending';

DROP INDEX reports_unfinished_idx;
DROP INDEX reports_business_started_idx;
DROP INDEX reports_business_unfinished_idx;
CREATE INDEX reports_pending_idx ON reports (created_at) WHERE status = 'pending';
CREATE INDEX reports_in_window_idx ON reports (updated_at) WHERE status IN ('queued', 'processing');
CREATE INDEX reports_business_queued_idx ON reports (business_id, queued_at);
CREATE INDEX reports_business_unfinished_idx ON reports (business_id, batch_id) WHERE status IN ('pending', 'queued', 'processing');

-- +goose Down
DROP INDEX reports_business_unfinished_idx;
DROP INDEX reports_business_queued_idx;
DROP INDEX reports_in_window_idx;
DROP INDEX reports_pending_idx;
UPDATE reports SET status = 'pending' WHERE status = 'queued';
CREATE INDEX reports_business_unfinished_idx ON reports (business_id, batch_id) WHERE status IN ('pending', 'processing');
CREATE INDEX reports_business_started_idx ON reports (business_id, build_started_at);
CREATE INDEX reports_unfinished_idx ON reports (created_at) WHERE status IN ('pending', 'processing');
COMMENT ON COLUMN reports.build_started_at IS 'When its build last started; a business''s latest decides its turn among the pending reports.';
ALTER TABLE reports DROP COLUMN traceparent, DROP COLUMN queued_at;
COMMENT ON COLUMN reports.status IS NULL;
ALTER TABLE reports DROP CONSTRAINT reports_status_check;
ALTER TABLE reports ADD CONSTRAINT reports_status_check CHECK (status IN ('pending', 'processing', 'success', 'failed'));
