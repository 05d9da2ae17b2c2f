package config

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoadReportsEveryBadValue(t *testing.T) {
	env := map[string]string{
		"HTTP_ADDR": "nonsense", "SUMSUB_RATE_LIMIT": "0", "BATCH_WINDOW": "x", "RECONCILE_INTERVAL": "-1s",
		"REPORT_LINK_TTL": "200h", "S3_FORCE_PATH_STYLE": "maybe", "LOG_LEVEL": "loud",
	}
	_, err := Load(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("Load accepted bad values")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("the error does not name %s:\n%v", name, err)
		}
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":          "postgres://kyc:db-password@db:5432/kycbatch",
		"REDIS_URL":             "redis://:redis-password@redis:6379/0",
		"SUMSUB_APP_TOKEN":      "prd:app-token-value",
		"SUMSUB_SECRET_KEY":     "sumsub-secret-value",
		"SUMSUB_WEBHOOK_SECRET": "webhook-secret-value",
	}
	cfg, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckWorker(); err != nil {
		t.Errorf("CheckWorker: %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", cfg)
	for _, secret := range []string{"db-password", "redis-password", "app-token-value", "sumsub-secret-value", "webhook-secret-value"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the logged configuration holds %q: %s", secret, buf.String())
		}
	}
	for _, set := range []string{`"sumsub_secret_key_set":true`, `"sumsub_webhook_secret_set":true`} {
		if !strings.Contains(buf.String(), set) {
			t.Errorf("the logged configuration does not say %s: %s", set, buf.String())
		}
	}
}
