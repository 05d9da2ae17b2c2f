package webhook

import (
	"crypto/rand"
	"encoding/base64"
)

// secretPrefix starts every signing secret, as Standard Webhooks writes them.
const secretPrefix = "whsec_"

// newSecret returns a signing secret: whsec_ and the base64 of 32 random
// bytes. Deliveries are signed with client.SignWebhook, the one
// implementation that the Go client's VerifyWebhook also checks against.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}
