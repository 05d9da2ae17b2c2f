package database_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/pgbouncertest"
)

// Through PgBouncer in transaction pooling mode the pool opens (no startup
// parameter it refuses), its connections have the generic plans the
// migrations set on the database, and a transaction's statements, COPY
// included, run as in a direct connection.
func TestOpenThroughPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := database.Open(ctx, pgbouncertest.URL(t, dbtest.URL(t)), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for range 3 { // more than one server connection, more than one statement
		var mode string
		if err := pool.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if mode != "force_generic_plan" {
			t.Fatalf("plan_cache_mode = %q, want force_generic_plan (migration 00013)", mode)
		}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE t (n int) ON COMMIT DROP"); err != nil {
		t.Fatal(err)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"n"}, pgx.CopyFromRows([][]any{{1}, {2}, {3}}))
	if err != nil || n != 3 {
		t.Fatalf("copy: %d rows, %v", n, err)
	}
	var sum int
	if err := tx.QueryRow(ctx, "SELECT sum(n) FROM t WHERE n > $1", 0).Scan(&sum); err != nil || sum != 6 {
		t.Fatalf("sum = %d, %v", sum, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// The migrations run over a direct connection give the database its
// generic plans, and a database cloned for a test keeps them.
func TestMigrationsSetGenericPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var mode string
	if err := conn.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&mode); err != nil || mode != "force_generic_plan" {
		t.Fatalf("plan_cache_mode = %q, %v; want force_generic_plan", mode, err)
	}
}
