package imports

import (
	"context"
	"sync"
)

// maxGroup bounds how many calls one group makes together.
const maxGroup = 100

// group runs the calls that arrive at once as one (group commit): the
// records' claims, and their outcomes' transactions. At a high rate the
// statements, round trips and wake-ups of PostgreSQL are shared by many
// records instead of paid by each, and at a low one a call waits for
// nothing, since a group is whatever arrived while the previous one ran.
// The caller that finds no group running runs its own call; those that
// arrive meanwhile queue, and the first of them runs the next group, with
// its own call. No goroutine of its own: nothing to start or stop.
type group[In, Out any] struct {
	// run makes the calls of list together, and returns each one's result
	// in list's order; an error is the whole group's.
	run func(ctx context.Context, list []In) ([]Out, error)

	mu      sync.Mutex
	busy    bool               // a group is running
	waiting []*queued[In, Out] // the calls that arrived meanwhile, in order
}

// queued is a call waiting in a group.
type queued[In, Out any] struct {
	in    In
	out   Out
	err   error
	lead  bool          // this caller runs the next group
	ready chan struct{} // closed once out and err, or lead, are set
}

// do makes the call in with the calls that arrive while it waits, and
// returns its result. An error is the group's: the caller may retry alone.
func (g *group[In, Out]) do(ctx context.Context, in In) (Out, error) {
	me := &queued[In, Out]{in: in, ready: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, me)
	if g.busy {
		g.mu.Unlock()
		<-me.ready
		if !me.lead {
			return me.out, me.err
		}
		g.mu.Lock()
	}
	// This caller leads: its call is the first waiting.
	g.busy = true
	list := g.waiting[:min(len(g.waiting), maxGroup)]
	g.waiting = append([]*queued[In, Out](nil), g.waiting[len(list):]...)
	g.mu.Unlock()

	ins := make([]In, len(list))
	for i, q := range list {
		ins[i] = q.in
	}
	outs, err := g.run(ctx, ins)

	g.mu.Lock()
	if len(g.waiting) > 0 {
		next := g.waiting[0]
		next.lead = true
		close(next.ready)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for i, q := range list {
		if err == nil {
			q.out = outs[i]
		}
		q.err = err
		if q != me {
			close(q.ready)
		}
	}
	return me.out, me.err
}
