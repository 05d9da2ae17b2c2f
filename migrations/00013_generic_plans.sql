-- +goose Up
-- The worker runs a handful of statements per record, single-batch or
-- single-row lookups whose best plan does not depend on the values; planning
-- their CTEs cost more CPU than running them. With generic plans a prepared
-- statement is planned once per connection. A setting of the database, not
-- of each connection, so that nothing is sent at startup (PgBouncer refuses
-- startup parameters it does not know). It needs the database's owner: a
-- migration role without that right leaves PostgreSQL's default, with a
-- warning.
-- +goose StatementBegin
DO $$
BEGIN
  EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_generic_plan', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'kycbatch: cannot set plan_cache_mode on database %: %', current_database(), SQLERRM;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
  EXECUTE format('ALTER DATABASE %I RESET plan_cache_mode', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'kycbatch: cannot reset plan_cache_mode on database %: %', current_database(), SQLERRM;
END
$$;
-- +goose StatementEnd
