package sumsub_test

import (
	"strings"
	"testing"

	"github.com/kycbatch/kycbatch/internal/sumsub"
)

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	const secret = "SoMe_SeCrEt_KeY"
	body := []byte(`{"applicantId":"5cb56e8e0a975a35f333cb83","type":"applicantReviewed"}`)
	// Digests computed apart, with Python's hmac module.
	const (
		sha1   = "8d27808a66f1f0891908ee2a801ae7377fec62aa"
		sha256 = "a57a5eaa2188c5fbcd0828f4a4907729c85fffd15eff323214c16e4fe9a451ab"
		sha512 = "03bf7100fed283c836f569546f1f81a91698d9a61bfc3c4cc575ce939c462f4bad5fa6ffb50a72a49270ca55c6f65c98c6ab064f072eda13e8720abbc44c55d8"
	)
	tests := []struct {
		name, alg, digest string
		body              []byte
		want              bool
	}{
		{"sha1", sumsub.DigestHMACSHA1, sha1, body, true},
		{"sha256", sumsub.DigestHMACSHA256, sha256, body, true},
		{"sha256 by default", "", sha256, body, true},
		{"sha512", sumsub.DigestHMACSHA512, sha512, body, true},
		{"uppercase hex", sumsub.DigestHMACSHA256, strings.ToUpper(sha256), body, true},
		{"other algorithm's digest", sumsub.DigestHMACSHA512, sha256, body, false},
		{"unknown algorithm", "HMAC_MD5_HEX", sha256, body, false},
		{"missing", sumsub.DigestHMACSHA256, "", body, false},
		{"not hex", sumsub.DigestHMACSHA256, "x" + sha256[1:], body, false},
		{"truncated", sumsub.DigestHMACSHA256, sha256[:62], body, false},
		{"other body", sumsub.DigestHMACSHA256, sha256, append(body, ' '), false},
	}
	for _, tt := range tests {
		if got := sumsub.VerifyWebhook(secret, tt.alg, tt.body, tt.digest); got != tt.want {
			t.Errorf("%s: VerifyWebhook = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got, _ := sumsub.WebhookDigest(secret, "", body); got != sha256 {
		t.Errorf("WebhookDigest = %s, want %s", got, sha256)
	}
}
