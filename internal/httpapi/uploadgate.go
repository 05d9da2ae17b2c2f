package httpapi

import (
	"net/http"
	"sync"

	"github.com/google/uuid"
)

// The refusals of the upload gate (API.md section 4): neither touches the
// idempotency key, and nothing is stored.
var (
	errTooManyUploads = newProblem(http.StatusTooManyRequests, "0701010400", "Too many uploads in progress, retry later", "")
	errUploadCapacity = newProblem(http.StatusServiceUnavailable, "0701010500", "Upload capacity reached, retry later", "")
)

// uploadGate bounds the uploads one API process receives at once: at most
// perBusiness for one business, and at most budget bytes of upload data
// for all. An upload counts for the size it announces (its Content-Length,
// at most the largest upload taken; the largest when it announces none),
// from the gate until its answer is sent: what its body may put in memory
// and in the spool file. One upload is always let in when none is in
// flight, whatever the budget.
type uploadGate struct {
	perBusiness int
	budget      int64

	mu         sync.Mutex
	byBusiness map[uuid.UUID]int
	bytes      int64
}

func newUploadGate(perBusiness int, budget int64) *uploadGate {
	return &uploadGate{perBusiness: perBusiness, budget: budget, byBusiness: map[uuid.UUID]int{}}
}

// enter admits an upload of business announcing contentLength bytes (-1:
// none), or refuses it; leave must be called once its answer is sent.
func (g *uploadGate) enter(business uuid.UUID, contentLength int64) (leave func(), err error) {
	size := int64(maxUploadBody)
	if contentLength >= 0 && contentLength < size {
		size = contentLength
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byBusiness[business] >= g.perBusiness {
		return nil, errTooManyUploads
	}
	if g.bytes > 0 && g.bytes+size > g.budget {
		return nil, errUploadCapacity
	}
	g.byBusiness[business]++
	g.bytes += size
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.bytes -= size
		if g.byBusiness[business]--; g.byBusiness[business] == 0 {
			delete(g.byBusiness, business)
		}
	}, nil
}
