package reports

import "context"

// Window is window, for the tests of the feeder.
const Window = window

// Feed is feed, for the tests of the turns.
func (b *Builder) Feed(ctx context.Context) error { return b.feed(ctx) }
