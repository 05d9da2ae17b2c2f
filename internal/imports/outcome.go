package imports

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/sumsub"
)

// callOutcome labels a Sumsub call for the metrics.
func callOutcome(err error) string {
	var se *sumsub.Error
	switch {
	case err == nil:
		return "success"
	case !errors.As(err, &se):
		return "transient" // the call was cut short (a shutdown)
	case se.Kind == sumsub.Permanent:
		return "permanent"
	case se.Kind == sumsub.RateLimited:
		return "rate_limited"
	case se.Kind == sumsub.Unauthorized:
		return "unauthorized"
	default:
		return "transient"
	}
}

// CallOutcomes are every label callOutcome gives, for the metrics to start at 0.
var CallOutcomes = []string{"success", "permanent", "rate_limited", "unauthorized", "transient"}

// entityStatus is the KYC status of the entity an import links the applicant to.
func entityStatus(a sumsub.Applicant) string {
	return entity.KYCStatus(a.Review.Status, a.Review.Answer)
}

// sumsubCode names a Sumsub refusal: SUMSUB_<errorName> (SUMSUB_INVALID_SHARE_TOKEN), or SUMSUB_HTTP_<status>.
func sumsubCode(e *sumsub.Error) string {
	if e.Name != "" {
		return "SUMSUB_" + strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(e.Name))
	}
	return fmt.Sprintf("SUMSUB_HTTP_%d", e.HTTPStatus)
}

// retryAfter is Sumsub's Retry-After, when it sent one, else fallback.
func retryAfter(se *sumsub.Error, fallback time.Duration) time.Duration {
	if se.RetryAfter > 0 {
		return se.RetryAfter + jitter()
	}
	return fallback
}
