// Command sumsubsim runs the Sumsub simulator (package sumsubsim) as its own
// process, so that chaos tests can inject faults into it, kill it and start it
// again apart from the API and the workers. Run sumsubsim -h for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kycbatch/kycbatch/internal/sumsub/sumsubsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sumsubsim:", err)
		if errors.As(err, new(usageError)) {
			fmt.Fprintln(os.Stderr, "Run sumsubsim -h for the flags.")
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// drainTimeout bounds how long the simulator lets requests in flight finish
// once it is told to stop; stalls outlast it and are cut, unanswered.
const drainTimeout = time.Second

// config is the simulator process's configuration.
type config struct {
	// Addr is where the simulator listens (-addr), host:port; port 0 picks one.
	Addr string
	// Sim is the simulator's own: credentials from SUMSUB_APP_TOKEN and
	// SUMSUB_SECRET_KEY, the rest from flags.
	Sim sumsubsim.Config
}

// usageError is a bad flag or environment value: the process exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usageHead = `Usage: sumsubsim [flags]

Runs the fake Sumsub API as its own process and prints
"sumsubsim listening on http://ADDR" once it accepts requests. Besides
Sumsub's paths it serves GET /_sim/stats, GET /_sim/tokens, GET and POST
/_sim/faults (outages and faults at run time) and POST /_sim/reset.

It accepts requests signed with SUMSUB_APP_TOKEN and SUMSUB_SECRET_KEY, or the
dev server's credentials when they are unset. With -webhook-url it sends an
applicantReviewed webhook there -webhook-delay after importing a sim-pending-
token, signed with SUMSUB_WEBHOOK_SECRET (or the dev server's). Each flag's default may be set in
the environment as SUMSUB_SIM_<FLAG> (e.g. SUMSUB_SIM_FAIL_RATE=0.1); a flag
given on the command line wins.

Flags:
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on -addr: %w", err)
	}
	sim := sumsubsim.New(cfg.Sim)
	defer sim.Close() // webhooks still pending are not sent
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "sumsubsim listening on http://%s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	drainCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer stop()
	if err := srv.Shutdown(drainCtx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shut down: %w", err)
		}
		// Stalled requests, and connections a client opened but never used
		// (Shutdown waits 5 s for those), are cut without an answer, as when
		// the real service goes away: that is no failure of the simulator.
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadConfig reads the flags in args over the defaults the environment sets.
// It returns flag.ErrHelp, after printing the usage to stdout, for -h.
func loadConfig(args []string, getenv func(string) string, stdout io.Writer) (config, error) {
	c := config{Sim: sumsubsim.Config{
		AppToken:  orDefault(getenv("SUMSUB_APP_TOKEN"), sumsubsim.DevAppToken),
		SecretKey: orDefault(getenv("SUMSUB_SECRET_KEY"), sumsubsim.DevSecretKey),
		Webhook:   sumsubsim.Webhook{Secret: orDefault(getenv("SUMSUB_WEBHOOK_SECRET"), sumsubsim.DevWebhookSecret)},
	}}
	f := &c.Sim.Faults
	fs := flag.NewFlagSet("sumsubsim", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, the usage printed only for -h
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8090", "listen on `host:port`; port 0 picks a free one")
	fs.IntVar(&c.Sim.RateLimit, "rate", sumsubsim.DefaultRateLimit, "most requests accepted in any one second; more get 429")
	fs.DurationVar(&c.Sim.Latency, "latency", 50*time.Millisecond, "added to every admitted request")
	fs.Float64Var(&f.FailRate, "fail-rate", 0, "fraction of reuse requests answered 503, nothing imported")
	fs.Float64Var(&f.StallRate, "stall-rate", 0, "fraction of reuse requests that import, then stall before answering")
	fs.DurationVar(&f.Stall, "stall", 5*time.Second, "how long a stall lasts")
	fs.DurationVar(&f.BurstEvery, "burst-every", 0, "start a 429 burst this often (with -burst-for); 0: no bursts")
	fs.DurationVar(&f.BurstFor, "burst-for", 0, "how long a 429 burst lasts")
	fs.Uint64Var(&f.Seed, "seed", 0, "seed of the fault dice; 0 picks one at random")
	fs.StringVar(&c.Sim.Webhook.URL, "webhook-url", "", "send applicantReviewed webhooks of sim-pending- tokens to this `URL`; empty: none")
	fs.DurationVar(&c.Sim.Webhook.Delay, "webhook-delay", 5*time.Second, "how long after the import a review completes and its webhook is sent")

	var errs error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envName(fl.Name)
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if err := fs.Set(fl.Name, v); err != nil {
				errs = errors.Join(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if errs != nil {
		return c, usageError{errs}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, usageHead)
			fs.PrintDefaults()
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if err := c.check(); err != nil {
		return c, usageError{fmt.Errorf("bad flags:\n%w", err)}
	}
	return c, nil
}

// check returns every bad value of c, each naming its flag.
func (c config) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	f := c.Sim.Faults
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("-addr: want host:port, got %q", c.Addr)
	}
	if w := c.Sim.Webhook.URL; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-webhook-url: want an http(s) URL, got %q", w)
		}
	}
	if c.Sim.RateLimit <= 0 {
		bad("-rate: want a positive number of requests a second, got %d", c.Sim.RateLimit)
	}
	for _, r := range []struct {
		name string
		rate float64
	}{{"-fail-rate", f.FailRate}, {"-stall-rate", f.StallRate}} {
		if !(r.rate >= 0 && r.rate <= 1) { // NaN fails both
			bad("%s: want a fraction between 0 and 1, got %v", r.name, r.rate)
		}
	}
	if f.FailRate+f.StallRate > 1 {
		bad("-fail-rate plus -stall-rate: want at most 1, got %v", f.FailRate+f.StallRate)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"-latency", c.Sim.Latency}, {"-stall", f.Stall}, {"-burst-every", f.BurstEvery}, {"-burst-for", f.BurstFor}, {"-webhook-delay", c.Sim.Webhook.Delay}} {
		if d.d < 0 {
			bad("%s: want a duration of 0 or more, got %v", d.name, d.d)
		}
	}
	switch {
	case (f.BurstEvery > 0) != (f.BurstFor > 0):
		bad("-burst-every and -burst-for: set both or neither, got %v and %v", f.BurstEvery, f.BurstFor)
	case f.BurstFor > 0 && f.BurstFor >= f.BurstEvery:
		bad("-burst-for: want less than -burst-every (%v), got %v: the burst would never end", f.BurstEvery, f.BurstFor)
	}
	return errors.Join(errs...)
}

// envName is the environment variable that sets flag name's default:
// SUMSUB_SIM_FAIL_RATE for fail-rate.
func envName(flagName string) string {
	return "SUMSUB_SIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}
