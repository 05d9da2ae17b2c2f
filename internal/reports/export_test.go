package reports

import "context"

// Claim is claim, for the tests of the builds' turns.
func (b *Builder) Claim(ctx context.Context) (Report, error) { return b.claim(ctx) }
