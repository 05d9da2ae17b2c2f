package contract

import (
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/reports"
)

// Initiated is the data of an initiate answer.
type Initiated struct {
	ClientID          string    `json:"client_id"`
	BulkStampClientID uuid.UUID `json:"bulk_stamp_client_id"`
	Status            string    `json:"status"`
}

// InitiatedOf maps a new report.
func InitiatedOf(r reports.Report) Initiated {
	return Initiated{ClientID: r.ID, BulkStampClientID: r.BatchID, Status: r.Status}
}

// Download is the data of a download answer, and of the report's events.
type Download struct {
	ClientID          string    `json:"client_id"`
	BulkStampClientID uuid.UUID `json:"bulk_stamp_client_id"`
	Status            string    `json:"status"`
	Stats             Stats     `json:"stats"`
	Link              *string   `json:"link"`
}

// Stats count a batch's records: pending, available (succeeded) and failed.
type Stats struct {
	Pending   int `json:"pending"`
	Available int `json:"available"`
	Failed    int `json:"failed"`
}

// DownloadOf maps a report's download.
func DownloadOf(d reports.Download) Download {
	return Download{
		ClientID: d.ID, BulkStampClientID: d.BatchID, Status: d.Status,
		Stats: Stats(d.Stats), Link: optional(d.Link),
	}
}
