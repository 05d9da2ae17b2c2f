package sumsub

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
)

// The algorithms Sumsub names in X-Payload-Digest-Alg to say how it signed a
// webhook's body.
const (
	DigestHMACSHA1   = "HMAC_SHA1_HEX"
	DigestHMACSHA256 = "HMAC_SHA256_HEX"
	DigestHMACSHA512 = "HMAC_SHA512_HEX"
)

// digestHashes maps each algorithm to its hash.
var digestHashes = map[string]func() hash.Hash{
	DigestHMACSHA1:   sha1.New,
	DigestHMACSHA256: sha256.New,
	DigestHMACSHA512: sha512.New,
}

// WebhookDigest returns the lowercase hex HMAC of body with secret, by alg
// (DigestHMACSHA256 when empty), as Sumsub puts it in X-Payload-Digest; ok
// is false for an algorithm Sumsub does not use.
func WebhookDigest(secret, alg string, body []byte) (digest string, ok bool) {
	if alg == "" {
		alg = DigestHMACSHA256
	}
	h, ok := digestHashes[alg]
	if !ok {
		return "", false
	}
	m := hmac.New(h, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil)), true
}

// VerifyWebhook reports whether digest is the X-Payload-Digest of body by
// alg (the X-Payload-Digest-Alg header; SHA-256 when empty) with secret. The
// comparison takes constant time; an unknown algorithm never verifies.
func VerifyWebhook(secret, alg string, body []byte, digest string) bool {
	want, ok := WebhookDigest(secret, alg, body)
	if !ok || digest == "" {
		return false
	}
	got, err := hex.DecodeString(digest)
	if err != nil {
		return false
	}
	wantBytes, _ := hex.DecodeString(want)
	return hmac.Equal(wantBytes, got)
}
