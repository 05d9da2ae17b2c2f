-- +goose Up
-- Reports of different businesses are built in fair turns: a build task
-- takes the pending report of the business served least recently.
ALTER TABLE reports ADD COLUMN build_started_at timestamptz;
COMMENT ON COLUMN reports.build_started_at IS 'When its build last started; a business''s latest decides its turn among the pending reports.';
CREATE INDEX reports_business_started_idx ON reports (business_id, build_started_at);
CREATE INDEX reports_business_unfinished_idx ON reports (business_id, batch_id) WHERE status IN ('pending', 'processing');

-- +goose Down
DROP INDEX reports_business_unfinished_idx;
DROP INDEX reports_business_started_idx;
ALTER TABLE reports DROP COLUMN build_started_at;
