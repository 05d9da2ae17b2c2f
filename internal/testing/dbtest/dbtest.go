// Package dbtest gives each test a fresh, migrated PostgreSQL database on the
// server the tests run against, so tests can run in parallel and assert on
// exactly the rows they wrote.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/migrations"
)

// serverURL is the PostgreSQL server of the tests, without a database name.
func serverURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// URL creates a fresh database from a migrated template and returns its URL;
// the database is dropped when the test ends. Without a reachable server the
// test fails in CI and is skipped elsewhere.
func URL(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("PostgreSQL not reachable at %s: %v", database.Redact(serverURL()), err)
		}
		tb.Fatalf("PostgreSQL not reachable at %s: %v", database.Redact(serverURL()), err)
	}
	defer admin.Close(ctx)

	templateOnce.Do(func() { templateName, templateErr = makeTemplate(ctx, admin) })
	if templateErr != nil {
		tb.Fatalf("migrated template: %v", templateErr)
	}
	name := "kycbatch_test_" + strings.ToLower(rand.Text()[:12])
	// CREATE DATABASE ... TEMPLATE refuses to run while another session uses
	// the template, so clones are serialised by an advisory lock.
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7243001)"); err != nil {
		tb.Fatal(err)
	}
	_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, templateName))
	if _, uerr := admin.Exec(ctx, "SELECT pg_advisory_unlock(7243001)"); uerr != nil {
		tb.Fatal(uerr)
	}
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	dropAtCleanup(tb, name)
	if err := copySettings(ctx, admin, templateName, name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	return withDatabase(serverURL(), name)
}

// copySettings gives database to the settings the migrations gave database
// from (ALTER DATABASE … SET), which CREATE DATABASE does not copy.
func copySettings(ctx context.Context, admin *pgx.Conn, from, to string) error {
	rows, err := admin.Query(ctx, `
		SELECT split_part(c, '=', 1), substr(c, strpos(c, '=') + 1)
		FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) c
		WHERE d.datname = $1 AND s.setrole = 0`, from)
	if err != nil {
		return err
	}
	settings, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Value string }])
	if err != nil {
		return err
	}
	for _, s := range settings {
		stmt := fmt.Sprintf("ALTER DATABASE %s SET %s = %s", pgx.Identifier{to}.Sanitize(),
			pgx.Identifier{s.Name}.Sanitize(), quoteLiteral(s.Value))
		if _, err := admin.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// MissingURL returns the URL of a database that does not exist yet, for code
// that must create it; it is dropped when the test ends if it was created.
func MissingURL(tb testing.TB) string {
	tb.Helper()
	name := "kycbatch_test_" + strings.ToLower(rand.Text()[:12])
	dropAtCleanup(tb, name)
	return withDatabase(serverURL(), name)
}

// dropAtCleanup drops database name when the test ends.
func dropAtCleanup(tb testing.TB, name string) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverURL())
		if err != nil {
			tb.Errorf("drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
}

// Pool is URL plus an open pool, closed when the test ends.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := database.Open(context.Background(), URL(tb), 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// makeTemplate migrates a template database named after the migrations'
// content, so that a changed migration gets a new template and unchanged ones
// are reused across test packages and runs.
func makeTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	name := "kycbatch_template_" + migrationsDigest()
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7243001)"); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock(7243001)") //nolint:errcheck // the session ends soon anyway

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", building)); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	if err := database.Migrate(ctx, withDatabase(serverURL(), building)); err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
		return "", err
	}
	return name, nil
}

func migrationsDigest() string {
	entries, err := migrations.FS.ReadDir(".")
	if err != nil {
		panic(err) // the files are embedded: this cannot fail at run time
	}
	h := sha256.New()
	for _, e := range entries {
		b, err := migrations.FS.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		h.Write([]byte(e.Name()))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// withDatabase returns rawURL naming database name instead.
func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("TEST_DATABASE_URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}
