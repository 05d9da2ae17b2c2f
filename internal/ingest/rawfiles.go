package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/kycbatch/kycbatch/internal/database"
)

// The raw uploads' life after their request: each holds every share token
// of its batch, so it is deleted once the batch has been final for
// UPLOAD_RETENTION (ExpireUploads), and a file whose batch was never stored
// goes at once or with the sweep (SweepUploads).

// deleteUpload deletes an upload's raw file, then the note of its pending upload.
func deleteUpload(ctx context.Context, db database.DB, files FileStore, fileKey string) error {
	if err := files.Delete(ctx, fileKey); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `DELETE FROM pending_uploads WHERE file_key = $1`, fileKey)
	return err
}

// orphanAge is how old a pending upload's note must be before its file is
// taken for an orphan: longer than any upload's request may last.
const orphanAge = time.Hour

// ExpireUploads deletes from S3 the raw uploads of batches final for
// longer than retention (each holds every share token of its batch) and
// notes when; it returns how many it deleted, at most 1,000 a call.
func ExpireUploads(ctx context.Context, db database.DB, files FileStore, retention time.Duration) (int, error) {
	rows, err := db.Query(ctx, `
		SELECT id, file_key FROM batches
		WHERE completed_at IS NOT NULL AND file_deleted_at IS NULL AND completed_at <= now() - make_interval(secs => $1)
		ORDER BY completed_at LIMIT 1000`, retention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("list expired uploads: %w", err)
	}
	type expired struct {
		ID  uuid.UUID
		Key string
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[expired])
	if err != nil {
		return 0, fmt.Errorf("list expired uploads: %w", err)
	}
	for i, e := range list {
		if err := files.Delete(ctx, e.Key); err != nil {
			return i, fmt.Errorf("delete the upload of batch %s: %w", e.ID, err)
		}
		if _, err := db.Exec(ctx, `UPDATE batches SET file_deleted_at = now() WHERE id = $1`, e.ID); err != nil {
			return i, fmt.Errorf("note the deleted upload of batch %s: %w", e.ID, err)
		}
	}
	return len(list), nil
}

// SweepUploads deletes the raw files of uploads whose batch was never stored
// (the request died between the S3 PUT and the commit, or could not delete
// the file after a failed commit), and reports how many it deleted.
func SweepUploads(ctx context.Context, db database.DB, files FileStore) (int, error) {
	rows, err := db.Query(ctx, `
		SELECT file_key FROM pending_uploads WHERE created_at < now() - make_interval(secs => $1)
		ORDER BY created_at LIMIT 1000`, orphanAge.Seconds())
	if err != nil {
		return 0, fmt.Errorf("list orphaned uploads: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("list orphaned uploads: %w", err)
	}
	for i, key := range keys {
		if err := deleteUpload(ctx, db, files, key); err != nil {
			return i, fmt.Errorf("delete orphaned upload %s: %w", key, err)
		}
	}
	return len(keys), nil
}
