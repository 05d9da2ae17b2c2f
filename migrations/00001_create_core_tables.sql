-- +goose Up
CREATE TABLE businesses (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE businesses IS 'Clients of kycbatch; every other object belongs to one.';

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    business_id uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);
COMMENT ON TABLE api_keys IS 'API keys of businesses; only a SHA-256 of each key is kept.';
COMMENT ON COLUMN api_keys.prefix IS 'First characters of the key: finds the candidate row and names the key to people.';
COMMENT ON COLUMN api_keys.key_hash IS 'SHA-256 of the whole key, compared in constant time.';

CREATE TABLE entities (
    id                          uuid PRIMARY KEY,
    business_id                 uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    external_id                 uuid NOT NULL,
    type                        text NOT NULL CHECK (type IN ('INDIVIDUAL', 'BUSINESS')),
    kyc_status                  text NOT NULL DEFAULT 'NOT_STARTED'
                                CHECK (kyc_status IN ('NOT_STARTED', 'PENDING', 'APPROVED', 'REJECTED')),
    sumsub_applicant_id         text,
    card_processor_public_token text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (business_id, external_id),
    UNIQUE (business_id, card_processor_public_token)
);
CREATE INDEX entities_business_created_idx ON entities (business_id, created_at DESC, id DESC);
COMMENT ON COLUMN entities.external_id IS 'The client''s own UUID for the entity, unique per business.';
COMMENT ON COLUMN entities.card_processor_public_token IS 'Unique per business: a card belongs to one entity.';

CREATE TABLE batches (
    id                uuid PRIMARY KEY,
    business_id       uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    idempotency_key   text NOT NULL,
    provider          text NOT NULL CHECK (provider = 'sumsub'),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')),
    total_records     integer NOT NULL CHECK (total_records > 0),
    succeeded_records integer NOT NULL DEFAULT 0,
    failed_records    integer NOT NULL DEFAULT 0,
    file_key          text NOT NULL,
    file_size         bigint NOT NULL,
    file_sha256       bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    UNIQUE (business_id, idempotency_key)
);
CREATE INDEX batches_active_idx ON batches (created_at) WHERE status IN ('pending', 'in_progress');
COMMENT ON COLUMN batches.idempotency_key IS 'Idempotency-Key of the upload; taken only by an upload answered 201.';
COMMENT ON COLUMN batches.file_key IS 'S3 key of the raw uploaded file.';

CREATE TABLE batch_records (
    batch_id                    uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    row_number                  integer NOT NULL,
    external_id                 uuid NOT NULL,
    share_token                 text,
    applicant_level             text,
    card_processor_public_token text,
    status                      text NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts                    integer NOT NULL DEFAULT 0,
    applicant_id                text,
    review_status               text,
    error_code                  text,
    error_message               text,
    processed_at                timestamptz,
    PRIMARY KEY (batch_id, row_number)
);
COMMENT ON COLUMN batch_records.row_number IS 'Spreadsheet row of the record in the uploaded file (header is row 1).';
COMMENT ON COLUMN batch_records.share_token IS 'Single-use Sumsub share token; a secret, never returned by the API.';

-- +goose Down
DROP TABLE batch_records;
DROP TABLE batches;
DROP TABLE entities;
DROP TABLE api_keys;
DROP TABLE businesses;
