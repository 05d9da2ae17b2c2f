package imports

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/ingest"
)

// maxGroup bounds how many outcomes one transaction stores.
const maxGroup = 100

// grouper stores the outcomes of calls that end at once in one transaction
// (group commit): at a high rate the commits, round trips and wake-ups of
// PostgreSQL are shared by many records instead of paid by each, and at a
// low one an outcome waits for nothing, since a group is whatever arrived
// while the previous one was stored. The caller that finds no group being
// stored stores its own outcome; those that arrive meanwhile queue, and the
// first of them stores the next group, with its own outcome. No goroutine of
// its own: nothing to start or stop.
type grouper struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	busy    bool      // a group is being stored
	waiting []*queued // the outcomes that arrived meanwhile, in order
}

// queued is an outcome waiting in a grouper.
type queued struct {
	ingest.Final
	res   ingest.Stored
	err   error
	lead  bool          // this caller stores the next group
	ready chan struct{} // closed once res and err, or lead, are set
}

// store stores f with the outcomes that arrive while it waits, and returns
// what became of it. An error is the group's: the caller retries alone.
func (g *grouper) store(ctx context.Context, f ingest.Final) (ingest.Stored, error) {
	me := &queued{Final: f, ready: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, me)
	if g.busy {
		g.mu.Unlock()
		<-me.ready
		if !me.lead {
			return me.res, me.err
		}
		g.mu.Lock()
	}
	// This caller leads: its outcome is the first waiting.
	g.busy = true
	group := g.waiting[:min(len(g.waiting), maxGroup)]
	g.waiting = append([]*queued(nil), g.waiting[len(group):]...)
	g.mu.Unlock()

	list := make([]ingest.Final, len(group))
	for i, q := range group {
		list[i] = q.Final
	}
	res, err := ingest.StoreOutcomes(ctx, g.pool, list)

	g.mu.Lock()
	if len(g.waiting) > 0 {
		next := g.waiting[0]
		next.lead = true
		close(next.ready)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for i, q := range group {
		if err == nil {
			q.res = res[i]
		}
		q.err = err
		if q != me {
			close(q.ready)
		}
	}
	return me.res, me.err
}
