// Package ingest owns batches and their records: the CSV upload (read once
// as a stream, validated, stored with its raw file), a batch's status,
// records and cancellation for the API (Service), and the record pipeline
// the worker runs (Processor: dispatch, claim, Sumsub import, outcome,
// completion, reconciliation). It owns the tables batches, batch_records,
// batch_counters (read through the view batch_progress) and
// pending_uploads; other packages read batches and records through its
// functions (Get, ByID, EachRecord, MarkReviewed, CountByStatus).
package ingest
