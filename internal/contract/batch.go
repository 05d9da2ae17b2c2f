package contract

import (
	"github.com/google/uuid"

	"github.com/kycbatch/kycbatch/internal/entity"
	"github.com/kycbatch/kycbatch/internal/ingest"
)

// Entity is an entity as the API shows it.
type Entity struct {
	ID                       uuid.UUID `json:"id"`
	ExternalID               uuid.UUID `json:"externalId"`
	Type                     string    `json:"type"`
	BusinessID               uuid.UUID `json:"businessId"`
	KYCStatus                string    `json:"kycStatus"`
	SumsubApplicantID        *string   `json:"sumsubApplicantId"`
	CardProcessorPublicToken *string   `json:"cardProcessorPublicToken"`
	CreatedAt                Time      `json:"createdAt"`
	UpdatedAt                Time      `json:"updatedAt"`
}

// EntityOf maps an entity.
func EntityOf(e entity.Entity) Entity {
	return Entity{
		ID: e.ID, ExternalID: e.ExternalID, Type: e.Type, BusinessID: e.BusinessID, KYCStatus: e.KYCStatus,
		SumsubApplicantID: optional(e.SumsubApplicantID), CardProcessorPublicToken: optional(e.CardProcessorPublicToken),
		CreatedAt: Time(e.CreatedAt), UpdatedAt: Time(e.UpdatedAt),
	}
}

// EntityPage is a page of GET /entity.
type EntityPage struct {
	Entities   []Entity `json:"entities"`
	NextCursor *string  `json:"nextCursor"`
}

// EntityPageOf maps a page of entities and the next page's cursor (empty on the last).
func EntityPageOf(list []entity.Entity, next string) EntityPage {
	page := EntityPage{Entities: make([]Entity, len(list)), NextCursor: optional(next)}
	for i, e := range list {
		page.Entities[i] = EntityOf(e)
	}
	return page
}

// Uploaded is the 201 body of an upload.
type Uploaded struct {
	BatchID      uuid.UUID `json:"batchId"`
	BusinessUUID uuid.UUID `json:"businessUuid"`
	Status       string    `json:"status"`
	TotalRecords int       `json:"totalRecords"`
	Message      string    `json:"message"`
	CreatedAt    Time      `json:"createdAt"`
}

// UploadedOf maps a new batch.
func UploadedOf(b ingest.Batch) Uploaded {
	return Uploaded{
		BatchID: b.ID, BusinessUUID: b.BusinessID, Status: b.Status, TotalRecords: b.Total,
		Message: "File uploaded successfully. Processing will start shortly.", CreatedAt: Time(b.CreatedAt),
	}
}

// BatchStatus is the body of GET /entity/kyc/import/batch/{batchId}, and the
// data of the batch's events.
type BatchStatus struct {
	BatchID               uuid.UUID `json:"batchId"`
	BusinessUUID          uuid.UUID `json:"businessUuid"`
	Provider              string    `json:"provider"`
	Status                string    `json:"status"`
	TotalRecords          int       `json:"totalRecords"`
	ProcessedRecords      int       `json:"processedRecords"`
	FailedRecords         int       `json:"failedRecords"`
	Summary               Summary   `json:"summary"`
	CreatedAt             Time      `json:"createdAt"`
	UpdatedAt             Time      `json:"updatedAt"`
	StartedAt             *Time     `json:"startedAt"`
	CompletedAt           *Time     `json:"completedAt"`
	EstimatedCompletionAt *Time     `json:"estimatedCompletionAt"`
	FileRetainedUntil     *Time     `json:"fileRetainedUntil"`
}

// Summary is a batch's successes and its largest groups of failures.
type Summary struct {
	SuccessfulRecords int          `json:"successfulRecords"`
	Errors            []ErrorGroup `json:"errors"`
}

// ErrorGroup counts the records that failed with one error.
type ErrorGroup struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Count   int    `json:"count"`
}

// BatchStatusOf maps a batch's status.
func BatchStatusOf(s ingest.Status) BatchStatus {
	groups := make([]ErrorGroup, len(s.Errors))
	for i, g := range s.Errors {
		groups[i] = ErrorGroup(g)
	}
	return BatchStatus{
		BatchID:               s.ID,
		BusinessUUID:          s.BusinessID,
		Provider:              s.Provider,
		Status:                s.Status,
		TotalRecords:          s.Total,
		ProcessedRecords:      s.Succeeded + s.Failed,
		FailedRecords:         s.Failed,
		Summary:               Summary{SuccessfulRecords: s.Succeeded, Errors: groups},
		CreatedAt:             Time(s.CreatedAt),
		UpdatedAt:             Time(s.UpdatedAt),
		StartedAt:             timePtr(s.StartedAt),
		CompletedAt:           timePtr(s.CompletedAt),
		EstimatedCompletionAt: timePtr(s.EstimatedCompletion),
		FileRetainedUntil:     timePtr(s.FileRetainedUntil),
	}
}

// Record is a batch record as the API shows it; it never carries the share token.
type Record struct {
	Row          int       `json:"row"`
	ExternalID   uuid.UUID `json:"externalId"`
	Status       string    `json:"status"`
	ApplicantID  *string   `json:"applicantId"`
	ReviewStatus *string   `json:"reviewStatus"`
	ErrorCode    *string   `json:"errorCode"`
	ErrorMessage *string   `json:"errorMessage"`
	Attempts     int       `json:"attempts"`
	ProcessedAt  *Time     `json:"processedAt"`
}

// BatchPage is a page of GET /entity/kyc/import/batch.
type BatchPage struct {
	Batches    []BatchStatus `json:"batches"`
	NextCursor *string       `json:"nextCursor"`
}

// BatchPageOf maps a page of batches and the next page's cursor (empty on the last).
func BatchPageOf(list []ingest.Status, next string) BatchPage {
	page := BatchPage{Batches: make([]BatchStatus, len(list)), NextCursor: optional(next)}
	for i, s := range list {
		page.Batches[i] = BatchStatusOf(s)
	}
	return page
}

// RecordPage is a page of GET .../batch/{batchId}/records.
type RecordPage struct {
	Records    []Record `json:"records"`
	NextCursor *string  `json:"nextCursor"`
}

// RecordPageOf maps a page of records and the next page's cursor (empty on the last).
func RecordPageOf(list []ingest.Result, next string) RecordPage {
	page := RecordPage{Records: make([]Record, len(list)), NextCursor: optional(next)}
	for i, r := range list {
		page.Records[i] = Record{
			Row: r.Row, ExternalID: r.ExternalID, Status: r.Status, ApplicantID: r.ApplicantID, ReviewStatus: r.ReviewStatus,
			ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage, Attempts: r.Attempts, ProcessedAt: timePtr(r.ProcessedAt),
		}
	}
	return page
}
