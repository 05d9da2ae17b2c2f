// Package reports builds usage reports of batches: a CSV of every record,
// streamed from PostgreSQL into S3, with counts, behind a presigned link
// signed afresh at every download. It owns the table reports; the batches
// and their records are ingest's, read through its functions.
package reports

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kycbatch/kycbatch/internal/auth"
	"github.com/kycbatch/kycbatch/internal/database"
	"github.com/kycbatch/kycbatch/internal/ingest"
	"github.com/kycbatch/kycbatch/internal/taskqueue"
	"github.com/kycbatch/kycbatch/internal/tracing"
)

// ErrNotFound answers unknown reports and other businesses' reports alike.
var ErrNotFound = errors.New("report not found")

// ErrTooMany is a business at its limit of reports in progress (pending,
// queued or processing).
var ErrTooMany = errors.New("too many reports in progress")

// idPrefix starts every report id, as the report API names them.
const idPrefix = "bulk_stamper_order_usage_report_"

const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns a report id: the prefix and 20 random letters.
func newID() string {
	b := make([]byte, 20)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)] // 256 % 52 = 48: a bias too small to matter for an id
	}
	return idPrefix + string(b)
}

// Stats count a batch's records: pending (not final), available (succeeded)
// and failed (failed or cancelled: no applicant came of them).
type Stats struct {
	Pending   int
	Available int
	Failed    int
}

// statsOf counts b's records from its counters.
func statsOf(b ingest.Batch) Stats {
	return Stats{Pending: b.Remaining(), Available: b.Succeeded, Failed: b.Failed + b.Cancelled}
}

// Report is a stored report.
type Report struct {
	ID         string
	BusinessID uuid.UUID
	BatchID    uuid.UUID
	Status     string // pending, processing, success, failed: as the API shows it (a queued report is pending)
	Stats      *Stats // as of the build, once built
	ObjectKey  string
}

// Download is a report as its download answer shows it: the stats as of the
// build (or of now while it builds) and, once built, a fresh link.
type Download struct {
	Report
	Stats Stats
	// Link is empty until the report is built.
	Link string
}

// Linker signs download links; *storage.Store is one.
type Linker interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Files stores report files and signs their links; *storage.Store is one.
type Files interface {
	Linker
	Upload(ctx context.Context, key string, body io.Reader, contentType string) error
}

// Service starts reports and answers their downloads, for the calling
// business (auth.BusinessFrom), and renders the data of report events.
type Service struct {
	feeder
	links      Linker
	linkTTL    time.Duration
	maxPending int
	logger     *slog.Logger
}

// ServiceConfig is what a Service is made of.
type ServiceConfig struct {
	Pool *pgxpool.Pool
	// Links signs the download links, which expire after LinkTTL.
	Links   Linker
	LinkTTL time.Duration
	// Queue enqueues the build tasks the feeder gives their turn.
	Queue taskqueue.Enqueuer
	// MaxPending is how many reports a business may have pending or
	// being built at once.
	MaxPending int
	Logger     *slog.Logger
}

// NewService returns a Service.
func NewService(c ServiceConfig) *Service {
	return &Service{feeder: feeder{pool: c.Pool, queue: c.Queue}, links: c.Links, linkTTL: c.LinkTTL, maxPending: c.MaxPending, logger: c.Logger}
}

// Initiate stores a pending report of the calling business's batch and
// feeds the builds, which enqueue its task when its turn comes (at once
// while few reports are in progress); ingest.ErrBatchNotFound when there is
// no such batch.
func (s *Service) Initiate(ctx context.Context, batchID uuid.UUID) (Report, error) {
	business := auth.BusinessFrom(ctx)
	if _, err := ingest.Get(ctx, s.pool, business, batchID); err != nil {
		return Report{}, err
	}
	// One business's initiates are taken one at a time (a lock of the
	// transaction on the business): of several at once for a batch, one
	// makes the report and the others answer it, and the limit is exact.
	r := Report{ID: newID(), BusinessID: business, BatchID: batchID, Status: "pending"}
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))`, business); err != nil {
			return err
		}
		existing, err := get(ctx, tx, `business_id = $1 AND batch_id = $2 AND status IN ('pending', 'queued', 'processing') ORDER BY created_at LIMIT 1`, business, batchID)
		if err == nil {
			r = existing
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM reports WHERE business_id = $1 AND status IN ('pending', 'queued', 'processing')`, business).Scan(&n); err != nil {
			return err
		}
		if n >= s.maxPending {
			return ErrTooMany
		}
		_, err = tx.Exec(ctx, `INSERT INTO reports (id, business_id, batch_id, traceparent) VALUES ($1, $2, $3, nullif($4, ''))`,
			r.ID, business, batchID, tracing.Traceparent(ctx))
		created = err == nil
		return err
	})
	if errors.Is(err, ErrTooMany) {
		return Report{}, err
	}
	if err != nil {
		return Report{}, fmt.Errorf("create report of %s: %w", batchID, err)
	}
	if !created {
		return r, nil // the batch's report in progress
	}
	// The report is stored: whatever goes wrong here, the workers feed
	// again as their builds end, and the reconciler enqueues what Redis
	// did not take.
	if err := s.feed(ctx); err != nil {
		s.logger.WarnContext(ctx, "feed report builds; the workers and the reconciler will", "report_id", r.ID, "error", err)
	}
	return r, nil
}

// Download returns the calling business's report id with its stats and,
// once built, a link signed now that expires after the TTL.
func (s *Service) Download(ctx context.Context, id string) (Download, error) {
	r, err := get(ctx, s.pool, `id = $1 AND business_id = $2`, id, auth.BusinessFrom(ctx))
	if err != nil {
		return Download{}, err
	}
	return s.download(ctx, r)
}

// DownloadByID returns report id whoever owns it: the data of the report's events.
func (s *Service) DownloadByID(ctx context.Context, id string) (Download, error) {
	r, err := get(ctx, s.pool, `id = $1`, id)
	if err != nil {
		return Download{}, err
	}
	return s.download(ctx, r)
}

func (s *Service) download(ctx context.Context, r Report) (Download, error) {
	d := Download{Report: r}
	if r.Stats != nil {
		d.Stats = *r.Stats
	} else {
		b, err := ingest.ByID(ctx, s.pool, r.BatchID)
		if err != nil {
			return Download{}, err
		}
		d.Stats = statsOf(b)
	}
	if r.Status == "success" {
		link, err := s.links.PresignGet(ctx, r.ObjectKey, s.linkTTL)
		if err != nil {
			return Download{}, err
		}
		d.Link = link
	}
	return d, nil
}

// get returns the report matching where (SQL on the reports row, with
// args). A queued report is pending to the API: its turn is a detail of
// how reports are built, not one of the contract's statuses.
func get(ctx context.Context, db database.DB, where string, args ...any) (Report, error) {
	var r Report
	var pending, available, failed *int
	err := db.QueryRow(ctx, `
		SELECT id, business_id, batch_id, CASE status WHEN 'queued' THEN 'pending' ELSE status END,
			stats_pending, stats_available, stats_failed, coalesce(object_key, '')
		FROM reports WHERE `+where, args...).
		Scan(&r.ID, &r.BusinessID, &r.BatchID, &r.Status, &pending, &available, &failed, &r.ObjectKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return Report{}, ErrNotFound
	}
	if err != nil {
		return Report{}, fmt.Errorf("get report: %w", err)
	}
	if pending != nil && available != nil && failed != nil {
		r.Stats = &Stats{Pending: *pending, Available: *available, Failed: *failed}
	}
	return r, nil
}
