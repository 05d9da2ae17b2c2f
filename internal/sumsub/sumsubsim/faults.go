package sumsubsim

import (
	"math/rand/v2"
	"time"
)

// Faults the simulator injects, for chaos tests; the zero value injects none.
// One roll of the dice per admitted reuse request with a share token picks a
// 503 with probability FailRate, else a stall with probability StallRate.
type Faults struct {
	// FailRate is the fraction of admitted reuse requests answered 503
	// before anything is imported, like a flaky token's 503.
	FailRate float64
	// StallRate is the fraction of admitted reuse requests that import the
	// token, then wait Stall before answering. If the client gives up or
	// dies meanwhile, the answer is lost though the import happened.
	StallRate float64
	// Stall is how long a stall lasts (e.g. 5s).
	Stall time.Duration
	// BurstEvery and BurstFor make 429 bursts: when the time since the
	// simulator started, modulo BurstEvery, is below BurstFor, every signed
	// request gets 429 without entering the rate window. The first burst
	// begins at the start. No bursts unless both are positive.
	BurstEvery, BurstFor time.Duration
	// Seed seeds the dice, so that a test sending requests one at a time
	// sees the same faults on every run; zero picks a random seed.
	Seed uint64
}

// SetFaults replaces the faults injected from now on, and seeds the dice
// again from f.Seed. Bursts keep their phase: it counts from the start.
func (s *Server) SetFaults(f Faults) {
	seed := f.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.dice = rand.New(rand.NewPCG(seed, seed))
}

// inBurst reports whether the request falls in a 429 burst, and counts it if so.
func (s *Server) inBurst() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	if f.BurstEvery <= 0 || f.BurstFor <= 0 {
		return false
	}
	since := s.cfg.Now().Sub(s.started)
	if since < 0 || since%f.BurstEvery >= f.BurstFor {
		return false
	}
	s.stats.Burst429++
	return true
}

// fault is what the dice chose for one admitted reuse request.
type fault int

const (
	noFault fault = iota
	fail          // answer 503 before anything else
	stall         // import, then wait before answering
)

// rollFault picks the fault of one admitted reuse request and counts it;
// it returns the stall's length too, read under the same lock.
func (s *Server) rollFault() (fault, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	switch x := s.dice.Float64(); {
	case x < f.FailRate:
		s.stats.Injected503++
		return fail, 0
	case x < f.FailRate+f.StallRate:
		s.stats.Stalls++
		return stall, f.Stall
	}
	return noFault, 0
}

// loseAnswer records that the client gave up on a stalled request for token.
func (s *Server) loseAnswer(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.LostAnswers++
	s.lost[token] = true
}
