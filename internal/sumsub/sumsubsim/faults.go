package sumsubsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Faults the simulator injects, for chaos tests and drills; the zero value
// injects none. One roll of the dice per admitted reuse request with a
// share token picks a 503 with probability FailRate, else a stall with
// probability StallRate. An Outage takes every request.
type Faults struct {
	// Outage, when set, takes every API request before the signature check
	// and outside the rate window, and imports nothing: Outage503 and
	// Outage401 answer as Sumsub down or a rotated secret would,
	// OutageTimeout never answers.
	Outage Outage
	// OutageEnds ends the outage; zero: it lasts until changed.
	OutageEnds time.Time
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

// Outage is a way for the whole of Sumsub to fail.
type Outage string

// The outages; OutageNone is none.
const (
	OutageNone    Outage = "none"
	Outage503     Outage = "503"
	Outage401     Outage = "401"
	OutageTimeout Outage = "timeout"
)

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

// Faults returns the faults injected now; an outage over reads as none.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current()
}

// current is Faults, under s.mu.
func (s *Server) current() Faults {
	f := s.faults
	if f.Outage == OutageNone || f.Outage != "" && !f.OutageEnds.IsZero() && !s.cfg.Now().Before(f.OutageEnds) {
		f.Outage, f.OutageEnds = "", time.Time{}
	}
	return f
}

// inOutage reports the outage that takes a request now, and counts it.
func (s *Server) inOutage() Outage {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.current().Outage
	if o != "" {
		s.stats.OutageAnswers++
	}
	return o
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

// faultsBody is GET /_sim/faults: the faults injected now, flat, durations
// as Go writes them ("500ms") and outageEndsAt null when the outage has no
// set end or there is none.
type faultsBody struct {
	Outage       Outage     `json:"outage"`
	OutageEndsAt *time.Time `json:"outageEndsAt"`
	FailRate     float64    `json:"failRate"`
	StallRate    float64    `json:"stallRate"`
	Stall        string     `json:"stall"`
	BurstEvery   string     `json:"burstEvery"`
	BurstFor     string     `json:"burstFor"`
}

func (s *Server) faultsBody() faultsBody {
	f := s.Faults()
	b := faultsBody{Outage: OutageNone, FailRate: f.FailRate, StallRate: f.StallRate,
		Stall: f.Stall.String(), BurstEvery: f.BurstEvery.String(), BurstFor: f.BurstFor.String()}
	if f.Outage != "" {
		b.Outage = f.Outage
	}
	if !f.OutageEnds.IsZero() {
		t := f.OutageEnds.UTC()
		b.OutageEndsAt = &t
	}
	return b
}

// faultsChange is the body of POST /_sim/faults: a field left out keeps
// its value; an outage lasts Seconds (absent or 0: until changed).
type faultsChange struct {
	Outage     *Outage  `json:"outage"`
	Seconds    float64  `json:"seconds"`
	FailRate   *float64 `json:"failRate"`
	StallRate  *float64 `json:"stallRate"`
	Stall      *string  `json:"stall"`
	BurstEvery *string  `json:"burstEvery"`
	BurstFor   *string  `json:"burstFor"`
}

// changeFaults applies a POST /_sim/faults body, all of it or, when any
// field is wrong, none of it.
func (s *Server) changeFaults(body io.Reader) error {
	var c faultsChange
	dec := json.NewDecoder(io.LimitReader(body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.current()
	if c.Outage != nil {
		switch *c.Outage {
		case OutageNone, Outage503, Outage401, OutageTimeout:
		default:
			return fmt.Errorf("faults: outage %q: want none, 503, 401 or timeout", *c.Outage)
		}
		if c.Seconds < 0 {
			return errors.New("faults: seconds must not be negative")
		}
		f.Outage, f.OutageEnds = *c.Outage, time.Time{}
		if *c.Outage == OutageNone {
			f.Outage = ""
		} else if c.Seconds > 0 {
			f.OutageEnds = s.cfg.Now().Add(time.Duration(c.Seconds * float64(time.Second)))
		}
	}
	for _, r := range []struct {
		name string
		v    *float64
		to   *float64
	}{{"failRate", c.FailRate, &f.FailRate}, {"stallRate", c.StallRate, &f.StallRate}} {
		if r.v == nil {
			continue
		}
		if *r.v < 0 || *r.v > 1 {
			return fmt.Errorf("faults: %s %v: want 0 to 1", r.name, *r.v)
		}
		*r.to = *r.v
	}
	for _, d := range []struct {
		name string
		v    *string
		to   *time.Duration
	}{{"stall", c.Stall, &f.Stall}, {"burstEvery", c.BurstEvery, &f.BurstEvery}, {"burstFor", c.BurstFor, &f.BurstFor}} {
		if d.v == nil {
			continue
		}
		v, err := time.ParseDuration(*d.v)
		if err != nil || v < 0 {
			return fmt.Errorf("faults: %s %q: want a duration such as \"500ms\"", d.name, *d.v)
		}
		*d.to = v
	}
	s.faults = f
	return nil
}
