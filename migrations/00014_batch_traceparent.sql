-- +goose Up
-- A batch's records are sent by the workers long after its upload, and not as
-- Asynq tasks, so no task header carries the upload's trace to them: the
-- batch keeps it, and every record's span starts from it.
ALTER TABLE batches ADD COLUMN traceparent text;
COMMENT ON COLUMN batches.traceparent IS 'W3C traceparent of the span that stored the batch (the upload''s dispatch) when the API traced it (OTEL_EXPORTER_OTLP_ENDPOINT set): the parent of each record''s span. NULL: not traced.';

-- +goose Down
ALTER TABLE batches DROP COLUMN traceparent;
