package database_test

import (
	"strings"
	"testing"

	"github.com/kycbatch/kycbatch/internal/database"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://kyc:s3cret@db:5432/kyc?sslmode=require", "postgres://kyc:xxxxx@db:5432/kyc?sslmode=require"},
		{"postgres://kyc@db/kyc?password=s3cret&sslmode=disable", "postgres://kyc@db/kyc?password=xxxxx&sslmode=disable"},
		{"postgres://db/kyc?sslpassword=s3cret&user=kyc", "postgres://db/kyc?sslpassword=xxxxx&user=kyc"},
		{"redis://:s3cret@cache:6379/0", "redis://:xxxxx@cache:6379/0"},
		{"redis-sentinel://:s3cret@s1:26379,s2:26379/0?master=m", "redis-sentinel://:xxxxx@s1:26379,s2:26379/0?master=m"},
		{"redis-sentinel://app:s3cret@s1,s2/0?master=m", "redis-sentinel://app:xxxxx@s1,s2/0?master=m"},
		{"rediss://cache:6380/0?auth_token=s3cret", "rediss://cache:6380/0?auth_token=xxxxx"},
		{"host=db user=kyc password=s3cret dbname=kyc", "host=db user=kyc password=xxxxx dbname=kyc"},
		{"host=db password='s3 cr\\'et' sslpassword = s3cret", "host=db password=xxxxx sslpassword = xxxxx"},
		{"postgres://db/kyc", "postgres://db/kyc"},
	}
	for _, tt := range tests {
		got := database.Redact(tt.in)
		if got != tt.want || strings.Contains(got, "s3") {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
