// Package database opens the PostgreSQL pool of kycbatch, creates the database
// when asked to and applies the embedded migrations.
package database

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/kycbatch/kycbatch/internal/tracing"
	"github.com/kycbatch/kycbatch/migrations"
)

// StartHint tells a developer how to start the PostgreSQL of this machine.
const StartHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

// WorkerPoolSize is a worker's pool: a connection for each task it runs at
// once, so that no record waits for one, and a few for the reconciler and
// the operations endpoints.
func WorkerPoolSize(concurrency int) int32 {
	return int32(concurrency + 4)
}

// APIPoolSize is the API's pool: a request holds a connection for one
// statement at a time (an upload for its COPY), so a few per core serve it.
const APIPoolSize = 16

// Open connects a pool of up to maxConns connections (0: pgx's default;
// pool_max_conns in the URL wins) to databaseURL and checks that the server
// answers, so that a wrong URL or a stopped server is reported at start, not
// at the first request.
func Open(ctx context.Context, databaseURL string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	// No session parameter is set here: PgBouncer refuses the startup
	// parameters it does not know. The generic plans the worker's statements
	// want are the database's setting (migration 00013).
	if maxConns > 0 && !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = maxConns
	}
	if tracing.Enabled() {
		// A span per statement inside a traced request or task: its text,
		// never its arguments (otelpgx's default; share tokens are arguments).
		cfg.ConnConfig.Tracer = otelpgx.NewTracer()
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL at %s: %w", Redact(databaseURL), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s (%s): %w", Redact(databaseURL), StartHint, err)
	}
	return pool, nil
}

// Migrate applies every pending migration over a connection of its own to
// migrateURL: a direct one to PostgreSQL, since goose's session lock (which
// makes concurrent runs, several replicas starting at once, safe) needs a
// session of its own, which PgBouncer's transaction pooling does not keep.
func Migrate(ctx context.Context, migrateURL string) error {
	cfg, err := pgx.ParseConfig(migrateURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_MIGRATE_URL: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations at %s: %w", Redact(migrateURL), err)
	}
	return nil
}

// EnsureExists creates the database named in databaseURL when it is missing,
// connecting to the server's "postgres" database to do so. The dev server and
// the tests use it; production databases are created by their operators.
func EnsureExists(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot reach PostgreSQL at %s (%s): %w", Redact(databaseURL), StartHint, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation on
// the named constraint (any constraint when constraint is empty).
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" &&
		(constraint == "" || pgErr.ConstraintName == constraint)
}

// Redact returns a connection string with every secret masked, fit for logs
// and error messages: a URL's password, wherever it sits (the userinfo, or
// any query parameter whose name says password, secret or token, as
// password and sslpassword do), and the same keys of PostgreSQL's
// key=value form.
func Redact(conn string) string {
	u, err := url.Parse(conn)
	if err != nil || u.Scheme == "" {
		// Not a URL to Go (a Sentinel list's host without a port), or
		// key=value: the userinfo's password, and every secret keyword.
		conn = userinfoPassword.ReplaceAllString(conn, "${1}"+mask+"@")
		return secretKeyword.ReplaceAllString(conn, "${1}"+mask)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretName.MatchString(k) {
				q[k] = []string{mask}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// mask replaces a secret, as url.URL.Redacted does.
const mask = "xxxxx"

var (
	secretName = regexp.MustCompile(`(?i)password|secret|token`)
	// secretKeyword matches a secret's value in key=value form: a word,
	// or a quoted string with its escapes.
	secretKeyword = regexp.MustCompile(`(?i)(\b\w*(?:password|secret|token)\w*\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*)`)
	// userinfoPassword matches the password of a URL's userinfo.
	userinfoPassword = regexp.MustCompile(`^(\w[\w+.-]*://[^:@/?#]*:)[^@/?#]*@`)
)

// DB is what both a pool and a transaction offer. The owner of a table
// exports functions taking a DB, so that one transaction can span owners
// (an outcome stored with its entity's update and its event) while the SQL
// naming each table stays in its owner.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}
