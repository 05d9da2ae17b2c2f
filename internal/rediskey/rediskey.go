// Package rediskey names every Redis key and channel kycbatch uses: its own,
// under one prefix, and those of Asynq's that the feeder reads. Scripts get
// them as KEYS, never typed out in their text, so that a name is written
// once, here.
package rediskey

import "time"

// Prefix starts every key kycbatch names itself. (Asynq's own keys start
// with "asynq:"; redis_rate puts "rate:" before the keys of its limits.)
const Prefix = "kycbatch:"

// sumsubSlot is the hash tag of the fair schedule's keys: the sumsub
// queue's, so that the feeder's script, which reads the schedule and the
// queue's lists together, touches keys of one Redis Cluster slot.
const sumsubSlot = "{sumsub}"

// The fair schedule (internal/schedule).
const (
	// SchedActive is a sorted set of the businesses with records to feed, by pass.
	SchedActive = Prefix + sumsubSlot + ":sched:active"
	// SchedVTime is the pass of the last record fed (the virtual time).
	SchedVTime = Prefix + sumsubSlot + ":sched:vtime"
	// SchedWeight is a hash of the businesses' weights.
	SchedWeight = Prefix + sumsubSlot + ":sched:weight"
	// SchedEpoch exists while the schedule is whole: a flushed or new Redis has none.
	SchedEpoch = Prefix + sumsubSlot + ":sched:epoch"
	// SchedBatches, followed by a business id, is a sorted set of the
	// business's batches with records to feed, by how many.
	SchedBatches = Prefix + sumsubSlot + ":sched:batches:"
	// SchedRebuild is the lock of a rebuild of the schedule from PostgreSQL.
	SchedRebuild = Prefix + sumsubSlot + ":sched:rebuild"
	// SchedWake is the pub/sub channel on which work appearing wakes idle feeders.
	SchedWake = Prefix + "sched:wake"
)

// The Sumsub circuit breaker (internal/sumsub/circuit).
const (
	// Circuit is a hash, present while the circuit is open.
	Circuit = Prefix + "sumsub:circuit"
	// CircuitProbe is the lease of the process probing Sumsub.
	CircuitProbe = Prefix + "sumsub:circuit:probe"
)

// Rate limits (redis_rate's GCRA; the library puts "rate:" before each).
const (
	// SumsubRate is the limit of every worker's Sumsub calls together.
	SumsubRate = Prefix + "sumsub"
	// APIRate, followed by a business id, is a business's request rate.
	APIRate = Prefix + "api-rate:"
)

// Asynq's keys, as Asynq v0.26 lays them out (its internal/base): the
// feeder reads a queue's lists and pause flag, and the queues registered
// for the dashboard. TestAsynqKeys holds them to what Asynq does.
const (
	// AsynqQueues is the set of the queues Asynq's inspector (and so the
	// dashboard) lists.
	AsynqQueues = "asynq:queues"
)

// AsynqPending is the list of a queue's pending tasks.
func AsynqPending(queue string) string { return "asynq:{" + queue + "}:pending" }

// AsynqActive is the list of a queue's active tasks.
func AsynqActive(queue string) string { return "asynq:{" + queue + "}:active" }

// AsynqLease is the sorted set of a queue's active tasks by the Unix time
// (seconds) their lease ends: AsynqLeaseDuration after they were dequeued,
// renewed to that every AsynqHeartbeat while their worker lives.
func AsynqLease(queue string) string { return "asynq:{" + queue + "}:lease" }

// Asynq's lease of an active task, and the interval of the heartbeat that
// renews it (Asynq v0.26: rdb.LeaseDuration, the server's heartbeater).
const (
	AsynqLeaseDuration = 30 * time.Second
	AsynqHeartbeat     = 5 * time.Second
)

// AsynqLiveLease is the Unix time (seconds) after which the lease of an
// active task still worked on ends, at now: a live worker renews it every
// heartbeat to the lease duration ahead, so a task whose lease ends sooner
// missed two heartbeats. Such a ghost (a failover of Redis to a replica that
// missed its primary's last writes leaves some) stays active until Asynq's
// recoverer, a minute or two later.
func AsynqLiveLease(now time.Time) int64 {
	return now.Add(AsynqLeaseDuration - 2*AsynqHeartbeat).Unix()
}

// AsynqRetry is the sorted set of a queue's tasks waiting out a retry.
func AsynqRetry(queue string) string { return "asynq:{" + queue + "}:retry" }

// AsynqPaused exists while a queue is paused.
func AsynqPaused(queue string) string { return "asynq:{" + queue + "}:paused" }
