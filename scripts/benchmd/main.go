// Command benchmd writes BENCHMARKS.md from the output of `go test -bench`
// (make bench): for every figure, the median of the runs with their range,
// the target and whether it is met, and the command that reproduces it.
//
//	go test -bench ... -count 5 | go run ./scripts/benchmd [-chaos chaos.txt] > BENCHMARKS.md
//
// With -chaos, the fault table of a `make chaos` run is added.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// figure is one line of BENCHMARKS.md: metrics of one benchmark.
type figure struct {
	what, bench string
	// show is the figure's text: each {unit} becomes that metric's median
	// and range.
	show string
	// target says what the figure must be; check decides it from the medians
	// and, for what must hold in every run, the largest values (nil: no target).
	target string
	check  func(med, most map[string]float64) bool
	cmd    string
}

var figures = []figure{
	{
		what: "Upload: accept a 5,000-row file (1.5 MB, ~250-char share tokens) over HTTP", bench: "Upload5000Rows",
		show: "p50 {ms-p50} ms, p99 {ms-p99} ms",
		cmd:  "go test ./internal/httpapi -run '^$' -bench Upload5000 -benchtime 20x -count 5",
	},
	{
		what: "… the floor: `psql \\copy` of the same rows into a bare table, same run", bench: "Upload5000Rows",
		show: "p50 {copy-ms-p50} ms, p99 {copy-ms-p99} ms",
		cmd:  "same",
	},
	{
		what: "… upload ÷ `\\copy` (medians, side by side)", bench: "Upload5000Rows",
		show:   "{ratio-p50} ×",
		target: "≤ 3", check: func(m, _ map[string]float64) bool { return m["ratio-p50"] <= 3 },
		cmd: "same",
	},
	{
		what: "Rate-limit use, 1 worker process, limit 10/s, 60 s", bench: "RateUse/workers=1",
		show:   "{use-ratio} of the limit, {429s} 429s, at most {max-in-1s} in any second",
		target: "≥ 0.98 of the limit, 0 429s in every run", check: rateUse,
		cmd: "RATE_SECONDS=60 go test ./cmd/worker -run '^$' -bench RateUse -benchtime 1x -count 3",
	},
	{
		what: "Rate-limit use, 3 worker processes, limit 10/s, 60 s", bench: "RateUse/workers=3",
		show:   "{use-ratio} of the limit, {429s} 429s, at most {max-in-1s} in any second",
		target: "≥ 0.98 of the limit, 0 429s in every run", check: rateUse,
		cmd: "same",
	},
	{
		what: "Pipeline ceiling: 5,000 records through the feeder, the sumsub queue's record tasks and the outcomes, limit 5,000/s, simulator latency 0", bench: "PipelineCeiling",
		show:   "{records/s} records/s",
		target: "≥ 1,000 records/s (100 × Sumsub's rate)", check: func(m, _ map[string]float64) bool { return m["records/s"] >= 1000 },
		cmd: "go test ./internal/worker -run '^$' -bench PipelineCeiling -benchtime 1x -count 5",
	},
	{
		what: "… CPU per record, every process (the test's: API, worker, simulator; PostgreSQL; Redis)", bench: "PipelineCeiling",
		show:   "{cpu-ms/record} ms: Go {go-cpu-ms/record}, PostgreSQL {pg-cpu-ms/record}, Redis {redis-cpu-ms/record}",
		target: "≤ 1.5 ms", check: func(m, _ map[string]float64) bool { return m["cpu-ms/record"] <= 1.5 },
		cmd: "same",
	},
	{
		what: "… the same pipeline through PgBouncer 1.18, transaction pooling, pgx cache_describe", bench: "PipelineThroughPgBouncer",
		show: "{records/s} records/s; CPU {cpu-ms/record} ms per record (PgBouncer's own not counted): Go {go-cpu-ms/record}, PostgreSQL {pg-cpu-ms/record}",
		cmd:  "go test ./internal/worker -run '^$' -bench PipelineThroughPgBouncer -benchtime 1x -count 3",
	},
	{
		what: "A 5,000-record batch from upload to completed at 10/s (500 s is the limit itself)", bench: "Batch5000",
		show:   "{upload-to-completed-s} s",
		target: "≤ 505 s", check: func(m, _ map[string]float64) bool { return m["upload-to-completed-s"] <= 505 },
		cmd: "go test ./internal/worker -run '^$' -bench Batch5000 -benchtime 1x -count 1 -timeout 30m",
	},
	{
		what: "Within a business: a 10-record batch, uploaded while its 5,000-record batch runs at 10/s", bench: "Fairness",
		show:   "completed in {small-batch-s} s",
		target: "≤ 2 s", check: func(m, _ map[string]float64) bool { return m["small-batch-s"] <= 2 },
		cmd: "go test ./internal/worker -run '^$' -bench Fairness -benchtime 1x -count 5",
	},
	{
		what: "Between businesses at 10/s: A's one 600-record batch, B's twenty of 30 uploaded 1 s later; A's share over 30 s", bench: "BusinessShares/600_beside_20x30",
		show:   "{a-share} of the records",
		target: "≥ 0.45 (90% of half)", check: func(m, _ map[string]float64) bool { return m["a-share"] >= 0.45 },
		cmd: "go test ./internal/worker -run '^$' -bench BusinessShares -benchtime 1x -count 3",
	},
	{
		what: "… weights 3 and 1: A's share", bench: "BusinessShares/weights_3_and_1",
		show:   "{a-share} of the records",
		target: "≥ 0.675 (90% of three quarters)", check: func(m, _ map[string]float64) bool { return m["a-share"] >= 0.675 },
		cmd: "same",
	},
	{
		what: "… a third business's 10-record batch while A and B saturate the rate", bench: "BusinessShares/third_business",
		show:   "{c-share} of the records while it had work; completed {c-done-s} s after its upload",
		target: "≥ 0.30 (90% of a third), ≤ 5 s", check: func(m, _ map[string]float64) bool { return m["c-share"] >= 0.30 && m["c-done-s"] <= 5 },
		cmd: "same",
	},
	{
		what: "Scheduling decision (a Lua script in Redis, round trip included) with 10 / 100 / 1,000 batches in progress across up to 100 businesses", bench: "Next",
		show:   "{us/decision-10} / {us/decision-100} / {us/decision-1000} µs; 1,000 ÷ 10: {growth-10-to-1000} ×",
		target: "grows ≤ 20%", check: func(m, _ map[string]float64) bool { return m["growth-10-to-1000"] <= 1.2 },
		cmd: "go test ./internal/schedule -run '^$' -bench Next -benchtime 10x -count 5",
	},
	{
		what: "At rest: a worker process, 120 s", bench: "Idle/worker",
		show:   "{cpu-%}% of a core, {redis-cmds/s} Redis commands/s",
		target: "≤ 0.5%, ≤ 20 commands/s", check: idleCost,
		cmd: "IDLE_SECONDS=120 go test ./cmd/worker -run '^$' -bench Idle -benchtime 1x -count 2",
	},
	{
		what: "At rest: the dev server (API, worker, S3, simulator), 120 s", bench: "Idle/devserver",
		show:   "{cpu-%}% of a core, {redis-cmds/s} Redis commands/s",
		target: "≤ 0.5%, ≤ 20 commands/s", check: idleCost,
		cmd: "same",
	},
	{
		what: "Ops pause the sumsub queue (Asynq's PauseQueue) mid-batch at 10/s, then resume", bench: "PauseResume",
		show:   "{calls-1s-to-3s-after-pause} Sumsub calls from 1 s to 3 s after the pause; after resuming, the first call in {first-call-after-resume-s} s and {calls-in-2nd-second-after-resume} calls in the second second",
		target: "0 calls from 1 s on; the full rate (≥ 9) within 2 s", check: func(m, most map[string]float64) bool {
			return most["calls-1s-to-3s-after-pause"] == 0 && m["calls-in-2nd-second-after-resume"] >= 9
		},
		cmd: "go test ./internal/worker -run '^$' -bench PauseResume -benchtime 3x -count 3",
	},
	{
		what: "A 1-record batch uploaded to an idle service (worker idle 3 s): from the batch's creation to its record's claim", bench: "StartFromIdle",
		show:   "{ms-to-start} ms on average, {ms-to-start-max} ms at most",
		target: "≤ 1 s", check: func(m, most map[string]float64) bool { return most["ms-to-start-max"] <= 1000 },
		cmd: "go test ./internal/worker -run '^$' -bench StartFromIdle -benchtime 5x -count 1",
	},
	{
		what: "estimatedCompletionAt, read at 10% and at 50% of a 200-record batch in a mixed load of three businesses at 10/s", bench: "Estimate",
		show: "off by {error-at-10%-pct}% and {error-at-50%-pct}% of the time then left (+ late, − early)",
		cmd:  "go test ./internal/worker -run '^$' -bench Estimate -benchtime 1x -count 3",
	},
	{
		what: "200 uploads of a 10 MB, 5,000-row file at once to cmd/api (50 businesses, 4 each; Expect: 100-continue)", bench: "ConcurrentUploads",
		show:   "peak RSS {peak-rss-MB} MB; {created/op} created, {429/op} × 429, {503/op} × 503 (no other answer); slowest /healthz {healthz-max-ms} ms",
		target: "peak RSS < 256 MB", check: func(m, most map[string]float64) bool { return most["peak-rss-MB"] < 256 },
		cmd: "go test ./cmd/api -run '^$' -bench ConcurrentUploads -benchtime 1x -count 3",
	},
	{
		what: "Reports while another business floods: its 2,000 initiates over 20 batches of 5,000 records (8 at a time), beside a 12-record batch's report", bench: "ReportFlood",
		show:   "the 12-record report ready {quiet-report-s} s after its initiate; the flood made {flood-reports/op} reports (10 at most in progress)",
		target: "≤ 3 s", check: func(m, most map[string]float64) bool { return most["quiet-report-s"] <= 3 },
		cmd: "go test ./internal/reports -run '^$' -bench ReportFlood -benchtime 1x -count 3",
	},
	{
		what: "Report: 5,000 records", bench: "BuildReport/records=5000",
		show: "{ms-p50} ms to build, peak RSS +{rss-growth-MB} MB, peak heap +{MB-peak-heap-growth} MB, {B/record} B allocated per record",
		cmd:  "go test ./internal/reports -run '^$' -bench BuildReport -benchtime 5x -count 5",
	},
	{
		what: "Report: 50,000 records", bench: "BuildReport/records=50000",
		show:   "{ms-p50} ms to build, peak RSS +{rss-growth-MB} MB, peak heap +{MB-peak-heap-growth} MB, {B/record} B allocated per record",
		target: "≤ 2 s, RSS growth ≤ 20 MB", check: func(m, _ map[string]float64) bool { return m["ms-p50"] <= 2000 && m["rss-growth-MB"] <= 20 },
		cmd: "same",
	},
	{
		what: "Reads: `GET` batch status, 32 concurrent clients", bench: "BatchStatus32",
		show: "{req/s} requests/s, p99 {ms-p99} ms",
		cmd:  "go test ./internal/httpapi -run '^$' -bench BatchStatus32 -benchtime 3000x -count 5",
	},
	{
		what: "CSV validation of a 5,000-row file", bench: "ParseCSV5000",
		show: "{ns/op} ns, {B/op} B allocated in {allocs/op} allocations",
		cmd:  "go test ./internal/ingest -run '^$' -bench ParseCSV5000 -benchmem -count 5",
	},
}

// rateUse: the median run uses 98% of the limit, and no run got a 429.
func rateUse(med, most map[string]float64) bool { return med["use-ratio"] >= 0.98 && most["429s"] == 0 }

// idleCost: at rest, at most half a percent of a core and 20 Redis commands a second.
func idleCost(med, _ map[string]float64) bool {
	return med["cpu-%"] <= 0.5 && med["redis-cmds/s"] <= 20
}

func main() {
	chaos := flag.String("chaos", "", "a `make chaos` output to include")
	flag.Parse()
	runs, env, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmd:", err)
		os.Exit(1)
	}
	var chaosTable string
	if *chaos != "" {
		b, err := os.ReadFile(*chaos)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchmd:", err)
			os.Exit(1)
		}
		chaosTable = chaosSummary(string(b))
	}
	write(os.Stdout, runs, env, chaosTable)
}

// runs maps a benchmark's name (without the package and the -GOMAXPROCS
// suffix) to its metrics, each with the values of every run.
type runs map[string]map[string][]float64

var (
	placeholder = regexp.MustCompile(`\{[^}]+\}`)
	benchLine   = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	envLine     = regexp.MustCompile(`^(goos|goarch|cpu): (.*)$`)
)

// parse reads `go test -bench` output.
func parse(r io.Reader) (runs, map[string]string, error) {
	out, env := runs{}, map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := envLine.FindStringSubmatch(line); m != nil {
			env[m[1]] = m[2]
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Fields(m[2])
		if out[m[1]] == nil {
			out[m[1]] = map[string][]float64{}
		}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %v", line, err)
			}
			out[m[1]][fields[i+1]] = append(out[m[1]][fields[i+1]], v)
		}
	}
	return out, env, sc.Err()
}

// chaosSummary keeps, of a `make chaos` output, the suite's summary and fault table.
func chaosSummary(out string) string {
	var keep []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, "records in") && strings.Contains(line, "batches of"):
			in = true
		case strings.HasPrefix(line, "--- "):
			keep = append(keep, line)
			in = false
		}
		if in {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, "\n")
}

func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// format writes a figure compactly: 3 significant digits, no exponent.
func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1 || v <= -1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func write(w io.Writer, r runs, env map[string]string, chaos string) {
	fmt.Fprintf(w, "# Benchmarks\n\n")
	fmt.Fprintf(w, "Written by `make bench` on %s (%s/%s, %s). PostgreSQL, Redis, the S3 endpoint and the Sumsub\n",
		time.Now().UTC().Format("2006-01-02"), env["goos"], env["goarch"], strings.TrimSpace(env["cpu"]))
	fmt.Fprintf(w, "simulator all run on this machine, over loopback. Each figure is the median of the runs (their range in\n")
	fmt.Fprintf(w, "brackets); a ratio is measured side by side within each run, then its median taken.\n\n")
	fmt.Fprintf(w, "| what | figure (median [min–max]) | target | command |\n|---|---|---|---|\n")
	for _, f := range figures {
		metrics := r[f.bench]
		medians, most := map[string]float64{}, map[string]float64{}
		runs, units := 0, 0
		text := placeholder.ReplaceAllStringFunc(f.show, func(p string) string {
			unit := p[1 : len(p)-1]
			vs := metrics[unit]
			units++
			if len(vs) == 0 {
				return "(not measured: " + unit + ")"
			}
			runs = max(runs, len(vs))
			medians[unit], most[unit] = median(vs), slices.Max(vs)
			if len(vs) == 1 {
				return format(medians[unit])
			}
			return fmt.Sprintf("%s [%s–%s]", format(medians[unit]), format(slices.Min(vs)), format(slices.Max(vs)))
		})
		target := ""
		if f.check != nil {
			switch {
			case len(medians) < units:
				target = f.target + ": not measured"
			case f.check(medians, most):
				target = f.target + ": **met**"
			default:
				target = f.target + ": **missed**"
			}
		}
		cmd := "same"
		if f.cmd != "same" {
			cmd = "`" + f.cmd + "`"
		}
		fmt.Fprintf(w, "| %s | %s (%d runs) | %s | %s |\n", f.what, text, runs, target, cmd)
	}
	fmt.Fprintf(w, "\n%s", notes)
	if chaos != "" {
		fmt.Fprintf(w, "\n## Chaos (`make chaos`)\n\n```\n%s\n```\n", strings.TrimSpace(chaos))
	}
}

// notes explain the method; they do not change with the figures.
const notes = `## Method

- ` + "`make bench`" + ` runs each command above with ` + "`-count`" + ` runs (` + "`BENCH_COUNT`" + `, default 5; 3 for the
  minute-long rate and sharing runs) and pipes the output through ` + "`scripts/benchmd`" + `, which writes this file.
- Upload: each iteration uploads the file through the production HTTP server (real multipart parsing,
  SHA-256, spool file, CSV validation, S3 put, CopyFrom) and, alternately before or after it, runs
  ` + "`psql \\copy`" + ` of the same file into a table of three text columns: a new psql process, its
  connection and the COPY, the floor for getting those rows into PostgreSQL.
- Rate-limit use: the dev server (API, one worker, the simulator at 10/s) and more ` + "`cmd/worker`" + `
  processes, a batch larger than the run; the simulator's counters are reset after 5 s of warm-up and
  read after 60 s. ` + "`max in any second`" + ` is the simulator's sliding one-second window.
- Pipeline ceiling: the whole pipeline in one process (the schedule in Redis, the feeder, the
  record tasks on Asynq, the grouped claims and outcome transactions in PostgreSQL, the Redis
  limiter, signed HTTP to the simulator), timed from worker start to the batch completed. CPU per
  record is read from /proc for this process, every PostgreSQL backend (and those reaped by the
  postmaster) and the Redis server.
- Pause and resume: Asynq's PauseQueue and UnpauseQueue on ` + "`sumsub`" + ` (what the dashboard's buttons
  call) in the middle of a batch at 10/s, the simulator's request count read 1 s and 3 s after the
  pause, then after resuming.
- Sharing between businesses (all at 10/s, over HTTP, the simulator enforcing its limit): the
  records each business got, counted from the records' processed times while both had work; the
  third business's time from its upload to ` + "`completed`" + `.
- Scheduling decision: the Next script's round trip from Go, with the schedule holding 10, 100 or
  1,000 batches of up to 100 businesses.
- At rest: the process alone on a Redis server of its own, ` + "`redis-cli MONITOR`" + ` counting the commands it
  sends, and its CPU from /proc, after 15 s to settle.
- Estimate: the error is (estimate − real completion) ÷ the time left when the estimate was read.
- Fairness within a business: the time from the small batch's upload to its completion, while the
  large one runs.
- Reports: the build streams PostgreSQL rows through the CSV writer into an S3 multipart upload
  (versitygw in its own process, so the RSS measured is the builder's); RSS growth is the
  kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs) minus VmRSS before.
- Reads: 32 goroutines with keep-alive connections ` + "`GET`" + ` one batch's status as fast as they can.

## Findings

- Pipeline ceiling and CPU per record: 3.2 ms per record when every record was an Asynq task
  enqueued at upload (issue 3); 0.99 ms once records left Asynq for a pipeline of their own (issue
  12), which ops could no longer see. Records are Asynq tasks again (issue 20), fed by the schedule
  into a short window: each costs an enqueue, a dequeue, a result and a completion script in Redis.
  At first that was 2.16 ms and 620 records/s; the claims of the tasks that run at once now share one
  statement (the group commit the outcomes already had), a claim is a HOT update again (it leaves
  queued_at alone), and a decision feeds five milliseconds of the rate once the window has room for
  it: the figure above.
- Fairness between businesses: before, shortest-remaining-first across all batches gave A 4% of
  the rate while B kept uploading small batches. Now each business gets its weighted share from the
  first request after its upload.
- At rest: an idle worker used 6.2% of a core and Redis served about 1,500 commands/s when Asynq
  polled every 10 ms for a record window (issue 3). Now the records have an Asynq server of their own
  that polls its one queue about every 200 ms (a fed task must not wait Asynq's default second), the
  other server polls its four queues every second, and the feeder asks the schedule every 5 s or
  when woken.
- Rate-limit use: the limiter asks for a permit 6 ms before the GCRA would grant it with a 3 ms
  tolerance: 0.99 of the limit with no 429. Picking the record after the permit let 429s through
  (the claim's round trips between the permit and the request); the record is picked and claimed
  first, and only the request follows the permit.
- Chaos: the Redis flush also empties the limiter's and the schedule's state; the workers rebuild
  the schedule from PostgreSQL at their next question and start a fresh rate window at once.
`
