package sumsubsim

import (
	"crypto/hmac"
	"crypto/subtle"
	"net/http"
	"strconv"
	"time"

	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// maxSkew is how far X-App-Access-Ts may be from the simulator's clock, in
// seconds, either way, inclusive: Sumsub's own example clients stamp a
// minute ahead.
const maxSkew = int64(sumsub.MaxClockSkew / time.Second)

// signatureMismatch is Sumsub's description of a wrong signature (a wrong
// secret).
const signatureMismatch = "Request signature mismatch"

// checkSignature returns Sumsub's description of what is wrong with the
// request's credentials, or "" when they are right.
func (s *Server) checkSignature(r *http.Request, body []byte) string {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-App-Token")), []byte(s.cfg.AppToken)) != 1 {
		return "App token is invalid"
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-App-Access-Ts"), 10, 64)
	now := s.cfg.Now().Unix()
	if err != nil || ts < now-maxSkew || ts > now+maxSkew {
		return "Request timestamp is too old or too far in the future"
	}
	// RequestURI is the path and query exactly as received: the bytes the
	// client had to sign.
	want := sumsub.Sign(s.cfg.SecretKey, ts, r.Method, r.RequestURI, body)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-App-Access-Sig"))) {
		return signatureMismatch
	}
	return ""
}
