-- +goose Up
-- The events of batches and reports become an outbox: the row is written in
-- the transaction of the change it reports (event), then dispatched to the
-- subscribed webhook endpoints (webhook), which stores the body it sent.
ALTER TABLE webhook_events RENAME TO events;
ALTER TABLE events RENAME CONSTRAINT webhook_events_pkey TO events_pkey;
ALTER TABLE events RENAME CONSTRAINT webhook_events_type_subject_key TO events_type_subject_key;
ALTER TABLE events RENAME CONSTRAINT webhook_events_business_id_fkey TO events_business_id_fkey;
ALTER TABLE events ALTER COLUMN body DROP NOT NULL, ADD COLUMN dispatched_at timestamptz;
UPDATE events SET dispatched_at = created_at;
CREATE INDEX events_undispatched_idx ON events (created_at) WHERE dispatched_at IS NULL;
COMMENT ON TABLE events IS 'The outbox of our own events (a batch finished, a report built), each written in the transaction of the change it reports.';
COMMENT ON COLUMN events.subject IS 'The batch or report the event is about: one event of a type per subject.';
COMMENT ON COLUMN events.body IS 'The exact JSON body POSTed (and signed) to every endpoint, set at dispatch; NULL when no endpoint wanted the event.';
COMMENT ON COLUMN events.dispatched_at IS 'When the event was handed to its endpoints'' deliveries; NULL while it waits in the outbox.';

-- A delivery names its event's type, so that its attempts list without reading the outbox.
ALTER TABLE webhook_deliveries ADD COLUMN event_type text;
UPDATE webhook_deliveries d SET event_type = e.type FROM events e WHERE e.id = d.event_id;
ALTER TABLE webhook_deliveries ALTER COLUMN event_type SET NOT NULL;

-- An upload puts its raw file in S3 before the transaction that stores its
-- batch, so that no transaction waits on the network. The file's key is
-- written here first and deleted in that transaction: a row that outlives
-- its upload is an object whose batch was never stored, which the
-- maintenance job deletes.
CREATE TABLE pending_uploads (
    file_key   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pending_uploads IS 'Raw upload files put in S3 whose batch is not stored yet; an old row is an orphaned object to delete.';

-- +goose Down
DROP TABLE pending_uploads;
ALTER TABLE webhook_deliveries DROP COLUMN event_type;
DROP INDEX events_undispatched_idx;
DELETE FROM events WHERE body IS NULL;
ALTER TABLE events DROP COLUMN dispatched_at, ALTER COLUMN body SET NOT NULL;
ALTER TABLE events RENAME CONSTRAINT events_business_id_fkey TO webhook_events_business_id_fkey;
ALTER TABLE events RENAME CONSTRAINT events_type_subject_key TO webhook_events_type_subject_key;
ALTER TABLE events RENAME CONSTRAINT events_pkey TO webhook_events_pkey;
ALTER TABLE events RENAME TO webhook_events;
