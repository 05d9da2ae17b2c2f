package sumsubsim

import "time"

// admit enters the request in the sliding one-second window, or reports that
// the window is full. Refused requests stay out of the window.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The clock is read under the lock, so that the window stays in order.
	now := s.cfg.Now()
	i := 0
	for i < len(s.window) && now.Sub(s.window[i]) >= time.Second {
		i++
	}
	s.window = s.window[i:]
	if len(s.window) >= s.cfg.RateLimit {
		s.stats.Rejected429++
		return false
	}
	s.window = append(s.window, now)
	s.stats.MaxRequestsInAnySecond = max(s.stats.MaxRequestsInAnySecond, len(s.window))
	return true
}
