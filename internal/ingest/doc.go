// Package ingest owns batches and their records. For the API it is the CSV
// upload (read once as a stream, validated, stored with its raw file), a
// batch's status and estimate, the list, records and cancellation
// (Service). As the owner of the tables batches, batch_records,
// batch_counters (read through the view batch_progress) and pending_uploads,
// it also holds the SQL of the record's state machine that the workers
// (internal/imports) drive: Feed, Claim, RetryLater, StoreOutcomes,
// CompleteIfDone and the reconciler's look-ups. Other packages read batches
// and records through its functions (Get, ByID, EachRecord, MarkReviewed,
// CountByStatus).
package ingest
