package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/testing/dbtest"
	"github.com/kycbatch/kycbatch/internal/testing/redistest"
)

func TestAdminCommands(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{"DATABASE_URL": dbtest.URL(t), "REDIS_URL": redistest.URL(t)}
	dbURL := env["DATABASE_URL"]
	getenv := func(k string) string { return env[k] }
	runOut := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, args, getenv, &out, &bytes.Buffer{})
		return out.String(), err
	}

	if out, err := runOut("migrate"); err != nil || out != "migrations applied\n" {
		t.Fatalf("migrate: %q, %v", out, err)
	}
	out, err := runOut("create-api-key", "--business", "Acme Payments")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^kyc_[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Fatalf("create-api-key printed %q, want the key alone on a line", out)
	}
	key := strings.TrimSpace(out)

	pool, err := database.Open(ctx, dbURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keys := auth.NewStore(pool)
	business, err := keys.Authenticate(ctx, key)
	if err != nil {
		t.Fatalf("the printed key does not authenticate: %v", err)
	}
	// A second key for the same business name joins the same business.
	out, _ = runOut("create-api-key", "--business", "Acme Payments")
	if again, err := keys.Authenticate(ctx, strings.TrimSpace(out)); err != nil || again != business {
		t.Errorf("second key: business %v, %v; want %v", again, err, business)
	}
	if out, err := runOut("create-business", "--name", "Acme Payments"); err != nil || strings.TrimSpace(out) != business.String() {
		t.Errorf("create-business of an existing name: %q, %v", out, err)
	}

	if out, err := runOut("revoke-api-key", "--prefix", auth.Prefix(key)); err != nil || out != "revoked 1 key(s)\n" {
		t.Fatalf("revoke: %q, %v", out, err)
	}
	if _, err := keys.Authenticate(ctx, key); err != auth.ErrBadKey {
		t.Errorf("revoked key authenticates: %v", err)
	}
	if _, err := runOut("create-api-key"); err == nil {
		t.Error("create-api-key without --business succeeded")
	}
	// Weights: 1 to 100, of a business that exists.
	if out, err := runOut("set-business-weight", "--business", "Acme Payments", "--weight", "3"); err != nil || !strings.HasPrefix(out, `business "Acme Payments" now has weight 3`) {
		t.Errorf("set-business-weight: %q, %v", out, err)
	}
	weights, err := auth.Weights(ctx, pool, []uuid.UUID{business})
	if err != nil || weights[business] != 3 {
		t.Errorf("stored weight: %v, %v; want 3", weights, err)
	}
	for _, args := range [][]string{
		{"--business", "Acme Payments", "--weight", "0"},
		{"--business", "Acme Payments", "--weight", "101"},
		{"--business", "Nobody", "--weight", "2"},
		{"--weight", "2"},
	} {
		if _, err := runOut(append([]string{"set-business-weight"}, args...)...); err == nil {
			t.Errorf("set-business-weight %v succeeded", args)
		}
	}
	if _, err := runOut("frobnicate"); err == nil {
		t.Error("an unknown command succeeded")
	}
}
