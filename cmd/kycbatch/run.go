package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kycbatch/kycbatch/client"
)

// Exit codes.
const (
	exitLocal       = 1
	exitUsage       = 2
	exitRefused     = 3
	exitServer      = 4
	exitBatchFailed = 5
	exitInterrupted = 130
)

// exitError carries the process status of a failed run; its message has
// been printed already.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a wrong command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// batchEndedError is a waited-for batch that ended failed or cancelled.
type batchEndedError struct{ b client.Batch }

func (e batchEndedError) Error() string {
	return fmt.Sprintf("batch %s ended %s", e.b.BatchID, e.b.Status)
}

const usage = `Usage: kycbatch [global flags] COMMAND [flags] [args]

Commands:
  entities create [--external-id UUID] [--type INDIVIDUAL|BUSINESS]
  entities get ID|EXTERNAL_ID
  entities list [--limit N] [--cursor C]
  upload FILE.csv [--idempotency-key K] [--wait] [--interval D]
  status BATCH_ID
  records BATCH_ID [--failed | --status pending|succeeded|failed]
  batches [--status S] [--idempotency-key K] [--limit N]
  cancel BATCH_ID
  report BATCH_ID --out FILE.csv [--interval D]

Global flags (also accepted after the command):
  --url URL            service URL (env KYCBATCH_URL, default http://127.0.0.1:8080)
  --api-key KEY        API key (env KYCBATCH_API_KEY)
  --output text|json   output format (default text)

Exit codes: 0 success, 1 local error, 2 usage error, 3 refused by the API (4xx),
4 server or network error, 5 batch ended failed or cancelled, 130 interrupted.
`

// config is what every command needs; the API key is never printed.
type config struct {
	url    string // service base URL
	apiKey string // a business's API key
	output string // "text" or "json"
}

// secretValue is a flag.Value that never shows its value (in -h defaults).
type secretValue struct{ p *string }

func (s secretValue) String() string     { return "" }
func (s secretValue) Set(v string) error { *s.p = v; return nil }

// register adds the global flags to fs.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", c.url, "service URL (env KYCBATCH_URL)")
	fs.Var(secretValue{&c.apiKey}, "api-key", "API key (env KYCBATCH_API_KEY)")
	fs.StringVar(&c.output, "output", c.output, "output format: text or json")
}

// cli is one run of the command.
type cli struct {
	config
	stdout, stderr io.Writer
	// interactive says stderr is a terminal, for the progress bar.
	interactive bool
	// apiKeyEnv is $KYCBATCH_API_KEY, used when --api-key is not given.
	apiKeyEnv string
	// interval is how often waits poll (--interval of upload and report).
	interval time.Duration
	// client is made by ready, once the flags are parsed.
	client *client.Client
}

// run parses args, runs the command and prints its result, or its error on
// stderr; the returned error carries the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c := &cli{stdout: stdout, stderr: stderr, interactive: isTerminal(stderr)}
	c.url = getenv("KYCBATCH_URL")
	if c.url == "" {
		c.url = "http://127.0.0.1:8080"
	}
	c.output = "text"
	err := c.dispatch(ctx, args, getenv)
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, usage)
		return nil
	}
	code := c.printError(ctx, err)
	return &exitError{code: code, err: err}
}

// dispatch parses the global flags and runs the command.
func (c *cli) dispatch(ctx context.Context, args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("kycbatch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return c.flagError(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("no command")
	}
	cmd, rest := rest[0], rest[1:]
	if cmd == "entities" {
		if len(rest) == 0 {
			return usagef("entities: want create, get or list")
		}
		cmd, rest = "entities "+rest[0], rest[1:]
	}
	commands := map[string]func(context.Context, []string) error{
		"entities create": c.entitiesCreate,
		"entities get":    c.entitiesGet,
		"entities list":   c.entitiesList,
		"upload":          c.upload,
		"status":          c.status,
		"records":         c.records,
		"batches":         c.batches,
		"cancel":          c.cancel,
		"report":          c.reportCmd,
		"help":            func(context.Context, []string) error { io.WriteString(c.stdout, usage); return nil },
	}
	f, ok := commands[cmd]
	if !ok {
		return usagef("unknown command %q", cmd)
	}
	// Commands parse their own flags (newFlags, parse), then ready makes
	// the client from the final configuration.
	c.apiKeyEnv = getenv("KYCBATCH_API_KEY")
	return f(ctx, rest)
}

// newFlags returns a flag set of a command, with the global flags.
func (c *cli) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	return fs
}

// parse parses args with fs, flags and positional arguments interleaved,
// and requires nargs positional arguments.
func (c *cli) parse(fs *flag.FlagSet, args []string, nargs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, c.flagError(err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) != nargs {
		return nil, usagef("%s: want %d argument(s), got %d", fs.Name(), nargs, len(pos))
	}
	return pos, c.ready()
}

// flagError turns a flag package error into a usage error; -h stays
// flag.ErrHelp, which run answers with the usage on stdout.
func (c *cli) flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err.Error()}
}

// ready checks the configuration and makes the client.
func (c *cli) ready() error {
	if c.output != "text" && c.output != "json" {
		return usagef("--output must be text or json, not %q", c.output)
	}
	if c.apiKey == "" {
		c.apiKey = c.apiKeyEnv
	}
	if c.apiKey == "" {
		return usagef("no API key: set KYCBATCH_API_KEY or pass --api-key")
	}
	if !strings.HasPrefix(c.url, "http://") && !strings.HasPrefix(c.url, "https://") {
		return usagef("--url must be an http:// or https:// URL")
	}
	if c.interval < 0 {
		return usagef("--interval must be positive")
	}
	c.client = client.New(c.url, c.apiKey, client.WithUserAgent("kycbatch-cli/1"), client.WithPollInterval(c.interval))
	return nil
}

// printError prints err on stderr in the output format and returns the exit
// status it means.
func (c *cli) printError(ctx context.Context, err error) int {
	var (
		code     int
		payload  = map[string]any{"message": err.Error()}
		text     = "kycbatch: " + err.Error()
		apiErr   *client.Error
		usageErr usageError
		ended    batchEndedError
	)
	switch {
	case errors.As(err, &usageErr):
		code = exitUsage
		text += "\n\n" + usage
	case errors.As(err, &ended):
		code = exitBatchFailed
	case errors.As(err, &apiErr):
		code = exitServer
		if apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 && apiErr.StatusCode != http.StatusTooManyRequests {
			code = exitRefused
		}
		payload = map[string]any{"status": apiErr.StatusCode, "code": apiErr.Code, "message": apiErr.Message, "parameter": apiErr.Parameter}
		text = fmt.Sprintf("kycbatch: HTTP %d, code %s: %s", apiErr.StatusCode, apiErr.Code, apiErr.Message)
		if apiErr.Parameter != "" {
			text += " (parameter " + apiErr.Parameter + ")"
		}
	case ctx.Err() != nil:
		code = exitInterrupted
	case errors.Is(err, errLocal):
		code = exitLocal
	default:
		code = exitServer
	}
	if c.output == "json" {
		writeJSON(c.stderr, map[string]any{"error": payload})
	} else {
		fmt.Fprintln(c.stderr, text)
	}
	return code
}

// errLocal marks failures on this machine (writing --out).
var errLocal = errors.New("local error")

// print writes v as JSON, or as text through text.
func (c *cli) print(v any, text func(w io.Writer)) {
	if c.output == "json" {
		writeJSON(c.stdout, v)
		return
	}
	text(c.stdout)
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
