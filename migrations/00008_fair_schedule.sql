-- +goose Up
-- Businesses share the Sumsub rate in proportion to their weight.
ALTER TABLE businesses ADD COLUMN weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 100);
COMMENT ON COLUMN businesses.weight IS 'Share of the Sumsub rate while the business has work, against the other businesses with work (1 to 100).';

-- A record is chosen by the scheduler (in Redis) as its permit comes,
-- not queued ahead in a window: queued_at goes. A failed attempt's record
-- waits until retry_at; refusals counts Sumsub's 429s, which are not attempts.
DROP INDEX batch_records_queued_idx;
ALTER TABLE batch_records DROP COLUMN queued_at,
    ADD COLUMN retry_at timestamptz,
    ADD COLUMN refusals integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN batch_records.retry_at IS 'When a record whose last call failed (a 5xx, a timeout, a 429) may be sent again; NULL: now.';
COMMENT ON COLUMN batch_records.refusals IS 'Times Sumsub refused the record''s call with 429 Too Many Requests (not attempts: Sumsub did not run them).';

-- A claim changes no indexed column of its record: with room left on each
-- page, PostgreSQL updates it in place (a HOT update), without touching the
-- indexes.
ALTER TABLE batch_records SET (fillfactor = 80);

-- +goose Down
ALTER TABLE batch_records RESET (fillfactor);
ALTER TABLE batch_records DROP COLUMN retry_at, DROP COLUMN refusals, ADD COLUMN queued_at timestamptz;
CREATE INDEX batch_records_queued_idx ON batch_records (batch_id) WHERE status = 'pending' AND queued_at IS NOT NULL;
ALTER TABLE businesses DROP COLUMN weight;
