// Package chaos is kycbatch's fault-injection suite (make chaos; a short run
// is part of make test). It runs the service as production does, as separate
// processes: the API, two workers and the Sumsub simulator, on a PostgreSQL
// cluster and a Redis server of its own, and S3 over loopback. While batches
// of three businesses run, it kills a worker with SIGKILL and restarts it,
// flushes Redis, restarts PostgreSQL and uploads during the outage, and the
// simulator answers 503s, 429 bursts and stalls longer than the client's
// timeout. At the end every batch must be complete, every record final and
// counted once, no share token imported twice, an unknown outcome only where
// the simulator imported a token whose answer was lost, and S3 and
// PostgreSQL must agree.
//
// TestSentinelFailover runs the same processes on a Redis behind Sentinel (a
// primary, a replica, three Sentinels) and SIGKILLs the primary mid-batch:
// every process must follow the promoted replica by itself, with nothing
// lost or doubled and the rate limit kept.
//
// The suite's size comes from the environment: CHAOS_RECORDS (default 400)
// records at CHAOS_RATE (default 50) Sumsub requests a second.
package chaos
