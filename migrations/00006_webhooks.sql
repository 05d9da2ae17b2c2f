-- +goose Up
CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    business_id uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    url         text NOT NULL,
    events      text[] NOT NULL DEFAULT '{}',
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_business_idx ON webhook_endpoints (business_id, created_at);
COMMENT ON TABLE webhook_endpoints IS 'Where a business wants our events (outgoing webhooks, Standard Webhooks format).';
COMMENT ON COLUMN webhook_endpoints.events IS 'Event types the endpoint receives; empty: every type.';
COMMENT ON COLUMN webhook_endpoints.secret IS 'Signing secret (whsec_ + base64 of 32 random bytes), kept readable to sign deliveries; shown to the client once, never logged.';

CREATE TABLE webhook_events (
    id          text PRIMARY KEY,
    business_id uuid NOT NULL REFERENCES businesses (id) ON DELETE CASCADE,
    type        text NOT NULL,
    subject     text NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (type, subject)
);
COMMENT ON TABLE webhook_events IS 'Events sent to webhook endpoints; one row per event, whatever the number of endpoints.';
COMMENT ON COLUMN webhook_events.id IS 'msg_ and random characters: the webhook-id header, the same on every attempt.';
COMMENT ON COLUMN webhook_events.subject IS 'The batch or report the event is about: one event of a type per subject, so an event the reconciler recovers is never sent twice.';
COMMENT ON COLUMN webhook_events.body IS 'The exact JSON body POSTed (and signed) on every attempt.';

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    event_id        text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'given_up')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (updated_at) WHERE status = 'pending';
COMMENT ON TABLE webhook_deliveries IS 'One event for one endpoint: its Asynq task is webhook:<id>.';
COMMENT ON COLUMN webhook_deliveries.status IS 'pending until a 2xx answer (delivered) or the last retry failed (given_up).';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS 'When the next attempt is due; the reconciler re-enqueues lost tasks for then.';

CREATE TABLE webhook_attempts (
    id            uuid PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id   uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    status        text NOT NULL CHECK (status IN ('delivered', 'failed', 'given_up')),
    response_code integer,
    latency_ms    integer NOT NULL,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, created_at DESC);
COMMENT ON TABLE webhook_attempts IS 'Every POST of a delivery, as GET /webhook-endpoints/{id}/deliveries lists them.';
COMMENT ON COLUMN webhook_attempts.status IS 'delivered (2xx), failed (will be retried) or given_up (the last attempt failed).';
COMMENT ON COLUMN webhook_attempts.error IS 'Why the attempt failed: the HTTP status or the transport error; never the secret.';

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
