package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Report statuses.
const (
	ReportPending    = "pending"
	ReportProcessing = "processing"
	ReportSuccess    = "success"
	ReportFailed     = "failed"
)

// ErrReportNotReady is returned by DownloadReport for a report that has no
// link: not built yet, or failed (see Report.Status).
var ErrReportNotReady = errors.New("report not ready")

// Report is a usage report of a batch.
type Report struct {
	// ID is the report's id ("bulk_stamper_order_usage_report_…"), the
	// contract's client_id.
	ID string `json:"client_id"`
	// BatchID is the batch reported on (bulk_stamp_client_id).
	BatchID string `json:"bulk_stamp_client_id"`
	Status  string `json:"status"` // ReportPending, ReportProcessing...
	// Stats counts the batch's records; nil in the answer of InitiateReport.
	Stats *ReportStats `json:"stats,omitempty"`
	// Link is a presigned GET URL of the CSV, valid a few minutes, once the
	// report is built; nil otherwise. It is a credential: do not log it.
	Link *string `json:"link,omitempty"`
}

// Done reports whether the report's status is final (success or failed).
func (r Report) Done() bool {
	return r.Status == ReportSuccess || r.Status == ReportFailed
}

// ReportStats counts a batch's records.
type ReportStats struct {
	Pending   int `json:"pending"`
	Available int `json:"available"` // succeeded
	Failed    int `json:"failed"`
}

// reportEnvelope is the report family's answer.
type reportEnvelope struct {
	Data *Report `json:"data"`
}

const reportPath = "/api/v1/stamper-v2/bulk-usage-report"

// InitiateReport starts building a usage report of a batch (POST
// .../initiate); the service builds it asynchronously.
func (c *Client) InitiateReport(ctx context.Context, batchID string) (Report, error) {
	var env reportEnvelope
	err := c.postJSON(ctx, reportPath+"/initiate", map[string]string{"client_id": batchID}, &env)
	return unwrap(env, err)
}

// GetReport reads a report's status, stats and, once built, a fresh
// download link (GET .../download).
func (c *Client) GetReport(ctx context.Context, reportID string) (Report, error) {
	var env reportEnvelope
	err := c.getJSON(ctx, reportPath+"/download"+query("client_id", reportID), &env)
	return unwrap(env, err)
}

// unwrap returns the report of an envelope.
func unwrap(env reportEnvelope, err error) (Report, error) {
	if err != nil {
		return Report{}, err
	}
	if env.Data == nil {
		return Report{}, errors.New("report answer without data")
	}
	return *env.Data, nil
}

// WaitReport polls the report (every WithPollInterval) until it is built or
// failed and returns it; a failed report is returned without error.
func (c *Client) WaitReport(ctx context.Context, reportID string) (Report, error) {
	for {
		r, err := c.GetReport(ctx, reportID)
		if err != nil || r.Done() {
			return r, err
		}
		if err := sleep(ctx, c.pollInterval); err != nil {
			return r, err
		}
	}
}

// DownloadReport writes a built report's CSV to w, following its presigned
// link (which is fetched without the API key), and returns the bytes
// written. A report without a link gives ErrReportNotReady.
func (c *Client) DownloadReport(ctx context.Context, reportID string, w io.Writer) (int64, error) {
	r, err := c.GetReport(ctx, reportID)
	if err != nil {
		return 0, err
	}
	if r.Link == nil || *r.Link == "" {
		return 0, fmt.Errorf("download report %s (status %s): %w", reportID, r.Status, ErrReportNotReady)
	}
	res, err := c.do(ctx, request{method: http.MethodGet, path: *r.Link, absURL: true, noAuth: true, repeatable: true})
	if err != nil {
		return 0, fmt.Errorf("download report %s: %w", reportID, err)
	}
	defer res.Body.Close()
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return n, fmt.Errorf("download report %s: %w", reportID, err)
	}
	return n, nil
}
