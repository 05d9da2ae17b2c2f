-- +goose Up
CREATE TABLE reports (
    id              text PRIMARY KEY,
    business_id     uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    batch_id        uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processing', 'success', 'failed')),
    stats_pending   integer,
    stats_available integer,
    stats_failed    integer,
    object_key      text,
    failure_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX reports_unfinished_idx ON reports (created_at) WHERE status IN ('pending', 'processing');
COMMENT ON TABLE reports IS 'Usage reports: a CSV snapshot of a batch''s records in S3; several per batch are allowed.';
COMMENT ON COLUMN reports.id IS 'bulk_stamper_order_usage_report_ followed by 20 random letters (the report API''s client_id).';
COMMENT ON COLUMN reports.stats_pending IS 'Records of the batch not yet final when the report was built (likewise available: succeeded, failed: failed).';
COMMENT ON COLUMN reports.object_key IS 'S3 key of the report CSV once built.';

-- +goose Down
DROP TABLE reports;
