package config

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoadReportsEveryBadValue(t *testing.T) {
	env := map[string]string{
		"HTTP_ADDR": "nonsense", "WORKER_METRICS_ADDR": "nonsense", "SUMSUB_RATE_LIMIT": "0", "WORKER_CONCURRENCY": "x",
		"RECONCILE_INTERVAL": "-1s", "REPORT_LINK_TTL": "200h", "S3_FORCE_PATH_STYLE": "maybe", "LOG_LEVEL": "loud",
		"MONITORING_USER": "ops", "DATABASE_MIGRATE_URL": "mysql://db/kycbatch",
	}
	getenv := func(k string) string { return env[k] }
	_, apiErr := LoadAPI(getenv)
	_, workerErr := LoadWorker(getenv)
	for _, tt := range []struct {
		binary string
		err    error
		names  []string
	}{
		{"API", apiErr, []string{"HTTP_ADDR", "SUMSUB_RATE_LIMIT", "REPORT_LINK_TTL", "S3_FORCE_PATH_STYLE", "LOG_LEVEL", "MONITORING_USER", "DATABASE_MIGRATE_URL"}},
		{"worker", workerErr, []string{"WORKER_METRICS_ADDR", "SUMSUB_RATE_LIMIT", "WORKER_CONCURRENCY", "RECONCILE_INTERVAL",
			"REPORT_LINK_TTL", "S3_FORCE_PATH_STYLE", "LOG_LEVEL", "SUMSUB_APP_TOKEN", "SUMSUB_SECRET_KEY"}},
	} {
		if tt.err == nil {
			t.Errorf("the %s's configuration accepted bad values", tt.binary)
			continue
		}
		for _, name := range tt.names {
			if !strings.Contains(tt.err.Error(), name+":") {
				t.Errorf("the %s's error does not name %s:\n%v", tt.binary, name, tt.err)
			}
		}
	}
	// Each binary reads only its own variables.
	if strings.Contains(apiErr.Error(), "WORKER_CONCURRENCY") || strings.Contains(workerErr.Error(), "HTTP_ADDR") {
		t.Errorf("a binary checked another's variables:\nAPI: %v\nworker: %v", apiErr, workerErr)
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":          "postgres://kyc@db:5432/kycbatch?password=db-password&sslpassword=ssl-key-password",
		"DATABASE_MIGRATE_URL":  "postgres://owner:migrate-password@db-direct:5432/kycbatch",
		"REDIS_URL":             "redis://:redis-password@redis:6379/0",
		"SUMSUB_APP_TOKEN":      "prd:app-token-value",
		"SUMSUB_SECRET_KEY":     "sumsub-secret-value",
		"SUMSUB_WEBHOOK_SECRET": "webhook-secret-value",
		"MONITORING_USER":       "ops",
		"MONITORING_PASSWORD":   "monitoring-password-value",
	}
	getenv := func(k string) string { return env[k] }
	api, err := LoadAPI(getenv)
	if err != nil {
		t.Fatal(err)
	}
	worker, err := LoadWorker(getenv)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "api", api, "worker", worker)
	for _, secret := range []string{"db-password", "migrate-password", "ssl-key-password", "redis-password", "app-token-value", "sumsub-secret-value", "webhook-secret-value", "monitoring-password-value"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the logged configuration holds %q: %s", secret, buf.String())
		}
	}
	for _, set := range []string{`"sumsub_secret_key_set":true`, `"sumsub_webhook_secret_set":true`, `"report_link_ttl":"10m0s"`} {
		if !strings.Contains(buf.String(), set) {
			t.Errorf("the logged configuration does not say %s: %s", set, buf.String())
		}
	}
}

// Without DATABASE_MIGRATE_URL the migrations go where DATABASE_URL points.
func TestDatabaseMigrateURL(t *testing.T) {
	for _, tt := range []struct{ migrate, want string }{
		{"", "postgres://pgbouncer:6432/kycbatch"},
		{"postgres://db:5432/kycbatch", "postgres://db:5432/kycbatch"},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://pgbouncer:6432/kycbatch", "DATABASE_MIGRATE_URL": tt.migrate}
		c, err := LoadAPI(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if c.DatabaseMigrateURL != tt.want {
			t.Errorf("DATABASE_MIGRATE_URL %q: migrations at %q, want %q", tt.migrate, c.DatabaseMigrateURL, tt.want)
		}
	}
}
