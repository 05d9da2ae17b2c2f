package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kycbatch/kycbatch/client"
)

// entitiesCreate: entities create [--external-id UUID] [--type T].
func (c *cli) entitiesCreate(ctx context.Context, args []string) error {
	fs := c.newFlags("entities create")
	externalID := fs.String("external-id", "", "the entity's own UUID (default: a random one)")
	typ := fs.String("type", client.EntityIndividual, "INDIVIDUAL or BUSINESS")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	e, err := c.client.CreateEntity(ctx, client.CreateEntityRequest{ExternalID: *externalID, Type: *typ})
	if err != nil {
		return err
	}
	c.print(e, func(w io.Writer) { printEntity(w, e) })
	return nil
}

// entitiesGet: entities get ID|EXTERNAL_ID.
func (c *cli) entitiesGet(ctx context.Context, args []string) error {
	pos, err := c.parse(c.newFlags("entities get"), args, 1)
	if err != nil {
		return err
	}
	e, err := c.client.GetEntity(ctx, pos[0])
	if err != nil {
		return err
	}
	c.print(e, func(w io.Writer) { printEntity(w, e) })
	return nil
}

// entitiesList: entities list [--limit N] [--cursor C].
func (c *cli) entitiesList(ctx context.Context, args []string) error {
	fs := c.newFlags("entities list")
	limit := fs.Int("limit", 100, "page size, 1..1000")
	cursor := fs.String("cursor", "", "nextCursor of the previous page")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	p, err := c.client.ListEntities(ctx, client.ListOptions{Limit: *limit, Cursor: *cursor})
	if err != nil {
		return err
	}
	c.print(p, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEXTERNAL ID\tTYPE\tKYC STATUS\tCREATED")
		for _, e := range p.Entities {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.ExternalID, e.Type, e.KYCStatus, e.CreatedAt.Format(time.RFC3339))
		}
		tw.Flush()
		if p.NextCursor != nil {
			fmt.Fprintf(w, "next page: --cursor %s\n", *p.NextCursor)
		}
	})
	return nil
}

func printEntity(w io.Writer, e client.Entity) {
	fmt.Fprintf(w, "id:          %s\nexternalId:  %s\ntype:        %s\nkycStatus:   %s\napplicantId: %s\ncreatedAt:   %s\n",
		e.ID, e.ExternalID, e.Type, e.KYCStatus, deref(e.SumsubApplicantID), e.CreatedAt.Format(time.RFC3339))
}

// upload: upload FILE.csv [--idempotency-key K] [--wait] [--interval D].
func (c *cli) upload(ctx context.Context, args []string) error {
	fs := c.newFlags("upload")
	key := fs.String("idempotency-key", "", "Idempotency-Key of the upload (default: a random one)")
	wait := fs.Bool("wait", false, "wait until the batch is done, showing progress")
	fs.DurationVar(&c.interval, "interval", client.DefaultPollInterval, "how often --wait polls")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return usagef("upload: %v", err)
	}
	defer f.Close()
	up, err := c.client.UploadBatch(ctx, f, client.UploadOptions{IdempotencyKey: *key, Filename: filepath.Base(pos[0])})
	if err != nil {
		return err
	}
	if !*wait {
		out := struct {
			client.Upload
			IdempotencyKey string `json:"idempotencyKey"`
		}{up, up.IdempotencyKey}
		c.print(out, func(w io.Writer) {
			fmt.Fprintf(w, "batch %s uploaded: %d records, %s (idempotency key %s)\n", up.BatchID, up.TotalRecords, up.Status, up.IdempotencyKey)
		})
		return nil
	}
	fmt.Fprintf(c.stderr, "batch %s uploaded: %d records\n", up.BatchID, up.TotalRecords)
	p := &progress{w: c.stderr, bar: c.interactive}
	final, err := c.client.WaitBatch(ctx, up.BatchID, p.show)
	p.end()
	if err != nil {
		return err
	}
	c.print(final, func(w io.Writer) { printBatch(w, final) })
	if final.Status != client.BatchCompleted {
		return batchEndedError{final}
	}
	return nil
}

// status: status BATCH_ID.
func (c *cli) status(ctx context.Context, args []string) error {
	pos, err := c.parse(c.newFlags("status"), args, 1)
	if err != nil {
		return err
	}
	b, err := c.client.GetBatch(ctx, pos[0])
	if err != nil {
		return err
	}
	c.print(b, func(w io.Writer) { printBatch(w, b) })
	return nil
}

// cancel: cancel BATCH_ID.
func (c *cli) cancel(ctx context.Context, args []string) error {
	pos, err := c.parse(c.newFlags("cancel"), args, 1)
	if err != nil {
		return err
	}
	b, err := c.client.CancelBatch(ctx, pos[0])
	if err != nil {
		return err
	}
	c.print(b, func(w io.Writer) { printBatch(w, b) })
	return nil
}

// printBatch writes a batch's status and final counts.
func printBatch(w io.Writer, b client.Batch) {
	fmt.Fprintf(w, "batch %s: %s\n", b.BatchID, b.Status)
	fmt.Fprintf(w, "total %d, processed %d, succeeded %d, failed %d\n",
		b.TotalRecords, b.ProcessedRecords, b.Summary.SuccessfulRecords, b.FailedRecords)
	if b.EstimatedCompletionAt != nil {
		fmt.Fprintf(w, "estimated completion: %s\n", b.EstimatedCompletionAt.Format(time.RFC3339))
	}
	for _, g := range b.Summary.Errors {
		fmt.Fprintf(w, "  %d × %s: %s\n", g.Count, g.Code, g.Message)
	}
}

// records: records BATCH_ID [--failed | --status S].
func (c *cli) records(ctx context.Context, args []string) error {
	fs := c.newFlags("records")
	failed := fs.Bool("failed", false, "only failed records (same as --status failed)")
	status := fs.String("status", "", "only records of this status: pending, succeeded or failed")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *failed {
		if *status != "" && *status != client.RecordFailed {
			return usagef("records: --failed and --status %s contradict", *status)
		}
		*status = client.RecordFailed
	}
	list := []client.Record{}
	for r, err := range c.client.AllRecords(ctx, pos[0], client.RecordsOptions{Status: *status, Limit: 1000}) {
		if err != nil {
			return err
		}
		list = append(list, r)
	}
	c.print(list, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROW\tEXTERNAL ID\tSTATUS\tAPPLICANT\tREVIEW\tERROR")
		for _, r := range list {
			errText := deref(r.ErrorCode)
			if r.ErrorMessage != nil {
				errText += ": " + *r.ErrorMessage
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Row, r.ExternalID, r.Status, deref(r.ApplicantID), deref(r.ReviewStatus), errText)
		}
		tw.Flush()
	})
	return nil
}

// batches: batches [--status S] [--idempotency-key K] [--limit N]: the
// business's batches, newest first (all pages, or the first N). With the
// key of an upload whose answer was lost, it finds that upload's batch.
func (c *cli) batches(ctx context.Context, args []string) error {
	fs := c.newFlags("batches")
	status := fs.String("status", "", "only batches of this status: pending, in_progress, completed, failed or cancelled")
	key := fs.String("idempotency-key", "", "only the batch made with this Idempotency-Key")
	limit := fs.Int("limit", 0, "at most this many batches (0: all)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	list := []client.Batch{}
	opts := client.BatchesOptions{Status: *status, IdempotencyKey: *key, Limit: 100}
	for *limit == 0 || len(list) < *limit {
		p, err := c.client.ListBatches(ctx, opts)
		if err != nil {
			return err
		}
		list = append(list, p.Batches...)
		if p.NextCursor == nil {
			break
		}
		opts.Cursor = *p.NextCursor
	}
	if *limit > 0 && len(list) > *limit {
		list = list[:*limit]
	}
	c.print(list, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BATCH\tSTATUS\tTOTAL\tPROCESSED\tFAILED\tCREATED")
		for _, b := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", b.BatchID, b.Status, b.TotalRecords, b.ProcessedRecords, b.FailedRecords, b.CreatedAt.Format(time.RFC3339))
		}
		tw.Flush()
	})
	return nil
}

// reportCmd: report BATCH_ID --out FILE.csv [--interval D]: initiate a
// report, wait until it is built, and download it.
func (c *cli) reportCmd(ctx context.Context, args []string) error {
	fs := c.newFlags("report")
	out := fs.String("out", "", "file to write the report CSV to (required)")
	fs.DurationVar(&c.interval, "interval", client.DefaultPollInterval, "how often to poll while the report is built")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("report: --out FILE is required")
	}
	rc := c.client
	rep, err := rc.InitiateReport(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "report %s: building\n", rep.ID)
	rep, err = rc.WaitReport(ctx, rep.ID)
	if err != nil {
		return err
	}
	if rep.Status != client.ReportSuccess {
		return fmt.Errorf("report %s: build %s", rep.ID, rep.Status)
	}
	n, err := download(ctx, rc, rep.ID, *out)
	if err != nil {
		return err
	}
	rep.Link = nil // a credential: never printed
	result := struct {
		client.Report
		Out   string `json:"out"`
		Bytes int64  `json:"bytes"`
	}{rep, *out, n}
	c.print(result, func(w io.Writer) {
		fmt.Fprintf(w, "report %s: %d bytes written to %s\n", rep.ID, n, *out)
		if rep.Stats != nil {
			fmt.Fprintf(w, "records: %d succeeded, %d failed, %d pending\n", rep.Stats.Available, rep.Stats.Failed, rep.Stats.Pending)
		}
	})
	return nil
}

// download writes the report to path through a temporary file beside it,
// so that path never holds a partial report.
func download(ctx context.Context, rc *client.Client, reportID, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errLocal, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	n, err := rc.DownloadReport(ctx, reportID, tmp)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		return n, fmt.Errorf("%w: %v", errLocal, cerr)
	}
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return n, fmt.Errorf("%w: %v", errLocal, err)
		}
		return n, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, fmt.Errorf("%w: %v", errLocal, err)
	}
	return n, nil
}

// progress shows a waited-for batch on stderr: a bar redrawn in place on a
// terminal, a line per change otherwise.
type progress struct {
	w    io.Writer
	bar  bool
	last string // the last line written, to skip repeats
}

func (p *progress) show(b client.Batch) {
	pct := 0
	if b.TotalRecords > 0 {
		pct = b.ProcessedRecords * 100 / b.TotalRecords
	}
	eta := ""
	if b.EstimatedCompletionAt != nil {
		eta = ", ETA " + max(time.Until(*b.EstimatedCompletionAt), 0).Round(time.Second).String()
	}
	line := fmt.Sprintf("%s %d/%d processed, %d failed, %d%%%s", b.Status, b.ProcessedRecords, b.TotalRecords, b.FailedRecords, pct, eta)
	if !p.bar {
		if line != p.last {
			fmt.Fprintln(p.w, line)
		}
		p.last = line
		return
	}
	const width = 30
	filled := pct * width / 100
	// \r and "erase line" redraw the bar in place.
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %s", strings.Repeat("#", filled), strings.Repeat("-", width-filled), line)
	p.last = line
}

// end finishes the bar's line.
func (p *progress) end() {
	if p.bar && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
