-- +goose Up
-- A business's batches, newest first (ids are UUIDv7: time-ordered).
CREATE INDEX batches_business_idx ON batches (business_id, id DESC);

-- +goose Down
DROP INDEX batches_business_idx;
