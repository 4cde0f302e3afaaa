/**
 * Every Prometheus metric this service exports, named per Prometheus conventions (base units in the
 * name, `_total` counters). k8s/ (autoscaling, rules) and the Grafana dashboard use these very names;
 * test/ops checks them against the real /metrics output.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** prom-client's default metrics that cost a heap walk on Bun (removed from every registry). */
const HEAP_SPACE_METRICS = ["total", "used", "available"].map(
  (kind) => `nodejs_heap_space_size_${kind}_bytes`,
);

export type ProcessKind = "api" | "actors" | "all" | "exchange" | "gateway" | "executions";

export function createMetrics(kind: ProcessKind) {
  const registry = new Registry();
  registry.setDefaultLabels({ process_kind: kind });
  collectDefaultMetrics({ register: registry });
  // v8.getHeapSpaceStatistics() walks Bun's whole heap: 80-90 ms per scrape at 500,000 objects, 9-10%
  // of an actor's CPU under load (bench:system's CPU profile). nodejs_heap_size_* (from
  // process.memoryUsage(), cheap) still report the heap.
  for (const space of HEAP_SPACE_METRICS) registry.removeSingleMetric(space);
  const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const registers = [registry];
  let readVenueInFlight: () => number = () => 0;
  let readIntakeStoreWait: () => number = () => 0;
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: "http_request_duration_seconds",
      help: "HTTP request duration by route and status",
      labelNames: ["method", "route", "status"] as const,
      buckets: latencyBuckets,
      registers,
    }),
    ordersAccepted: new Counter({
      name: "orders_accepted_total",
      help: "Orders stored and answered 201 (first time)",
      registers,
    }),
    ordersReplayed: new Counter({
      name: "orders_idempotent_replays_total",
      help: "Requests answered with an earlier order of the same Idempotency-Key",
      registers,
    }),
    ordersValidationRejected: new Counter({
      name: "orders_validation_rejected_total",
      help: "Requests rejected with a 4xx before anything was stored",
      labelNames: ["reason"] as const,
      registers,
    }),
    ordersInternalErrors: new Counter({
      name: "orders_internal_errors_total",
      help: "POST /orders answered with the 500 body",
      labelNames: ["cause"] as const,
      registers,
    }),
    ordersShed: new Counter({
      name: "orders_intake_shed_total",
      help: "POST /orders answered 503 (nothing stored): an intake MongoDB step had waited INTAKE_SHED_AFTER_MS unanswered",
      registers,
    }),
    intakeAdmissionState: new Gauge({
      name: "orders_intake_admission_state",
      help: "Load shedding at intake: 0 closed (orders admitted), 1 half-open (one trial order), 2 open (orders answered 503)",
      registers,
    }),
    intakeStoreWait: new Gauge({
      name: "orders_intake_store_oldest_wait_seconds",
      help: "How long the oldest MongoDB step of intake still waiting has waited (0: none waiting); shedding starts at INTAKE_SHED_AFTER_MS",
      registers,
      collect() {
        this.set(readIntakeStoreWait() / 1000);
      },
    }),
    /** Where the intake's oldest store wait (ms) is read at each scrape (0 until it is set). */
    measureIntakeStoreWait(read: () => number): void {
      readIntakeStoreWait = read;
    },
    orderWithdrawals: new Counter({
      name: "orders_withdrawals_total",
      help: "Orders answered 500 without an Idempotency-Key, withdrawn so that nothing places them, by who finished the withdrawal and its result (withdrawn, not_stored, or the final status it turned out to have)",
      labelNames: ["by", "result"] as const,
      registers,
    }),
    orderWithdrawalsPending: new Gauge({
      name: "orders_withdrawals_pending",
      help: "Withdrawals this process is still retrying (MongoDB or Redis did not answer yet)",
      registers,
    }),
    rateLimitUnavailable: new Counter({
      name: "orders_rate_limit_unavailable_total",
      help: "Requests let through without a rate-limit check because Redis did not answer",
      registers,
    }),
    dispatchFailures: new Counter({
      name: "orders_dispatch_failures_total",
      help: "Orders stored but not appended to the placement stream at intake (the sweeper dispatches them)",
      registers,
    }),
    placements: new Counter({
      name: "placement_outcomes_total",
      help: "Placement attempts by outcome: placed, retry (transient failure), deferred (the breaker refused before any venue call; not an attempt), rejected, skipped (already final or held)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    placementAttemptDuration: new Histogram({
      name: "placement_attempt_duration_seconds",
      help: "Duration of one call to the exchange, by outcome",
      labelNames: ["outcome"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10],
      registers,
    }),
    breakerState: new Gauge({
      name: "exchange_breaker_state",
      help: "Circuit breaker towards the exchange: 0 closed, 1 half-open, 2 open",
      registers,
    }),
    breakerTransitions: new Counter({
      name: "exchange_breaker_transitions_total",
      help: "Circuit breaker state changes, by the state entered",
      labelNames: ["to"] as const,
      registers,
    }),
    streamLength: new Gauge({
      name: "placement_stream_entries",
      help: "XLEN of the placement streams",
      registers,
    }),
    streamLag: new Gauge({
      name: "placement_stream_lag_entries",
      help: "Entries not yet delivered to the placement consumer group",
      registers,
    }),
    streamPending: new Gauge({
      name: "placement_stream_pending_entries",
      help: "Entries delivered but not yet acknowledged",
      registers,
    }),
    deadLetterEntries: new Gauge({
      name: "placement_dead_letter_entries",
      help: "XLEN of the dead-letter stream",
      registers,
    }),
    deadLettered: new Counter({
      name: "placement_dead_lettered_total",
      help: "Entries moved to the dead-letter stream, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    reclaimed: new Counter({
      name: "placement_reclaimed_entries_total",
      help: "Pending entries taken over from a dead or hung consumer",
      registers,
    }),
    reclaimedWithoutPayload: new Counter({
      name: "placement_reclaimed_missing_payload_total",
      help: "Pending entries whose payload was gone (the sweeper re-drives those orders from MongoDB)",
      registers,
    }),
    sweeperPasses: new Counter({
      name: "placement_sweeper_passes_total",
      help: "Sweeper passes over a partition, by kind: recent (the recent sweep buckets, index-backed) or full (every due order; on FerretDB a read of the backlog)",
      labelNames: ["kind"] as const,
      registers,
    }),
    sweeperRedispatched: new Counter({
      name: "placement_sweeper_redispatched_total",
      help: "Orders put on the placement stream again by the sweeper, by reason",
      labelNames: ["reason"] as const,
      registers,
    }),
    actorInFlight: new Gauge({
      name: "actor_in_flight_messages",
      help: "Messages an actor is handling right now",
      labelNames: ["actor"] as const,
      registers,
    }),
    venueInFlight: new Gauge({
      name: "placement_venue_in_flight",
      help: "Orders at the venue: from their first venue call to its answer (at most ACTOR_CONCURRENCY)",
      registers,
      // Read at the scrape: exact whenever it is read, and nothing on the hot path of each order.
      collect() {
        this.set(readVenueInFlight());
      },
    }),
    /** Where the placement actor's venue slots in use are read at each scrape (0 until it is set). */
    measureVenueInFlight(read: () => number): void {
      readVenueInFlight = read;
    },
    actorRestarts: new Counter({
      name: "actor_restarts_total",
      help: "Actor loops restarted by the supervisor after a crash",
      labelNames: ["actor"] as const,
      registers,
    }),
    actorMessages: new Counter({
      name: "actor_messages_total",
      help: "Messages handled by an actor, by result (ack, error)",
      labelNames: ["actor", "result"] as const,
      registers,
    }),
    mongoOperations: new Counter({
      name: "orders_mongo_operations_total",
      help: "Commands sent to MongoDB, by command name (insert, update, find, ...)",
      labelNames: ["command"] as const,
      registers,
    }),
    mongoDurableWrites: new Counter({
      name: "orders_mongo_durable_writes_total",
      help: "Documents written with write concern majority + journal, by kind (insert, final, park, ...)",
      labelNames: ["kind"] as const,
      registers,
    }),
    finalWriteMismatches: new Counter({
      name: "placement_final_write_mismatches_total",
      help: "Final writes that found another outcome already stored (conflict) or no order (missing)",
      labelNames: ["result"] as const,
      registers,
    }),
    venueDuplicates: new Counter({
      name: "placement_venue_duplicates_total",
      help: "Submissions the venue recognised as a resubmission of an order it had (absorbed by client order id)",
      registers,
    }),
    readFailures: new Counter({
      name: "placement_read_failures_total",
      help: "Reads of the placement streams that failed (timeout, connection lost); retried with backoff",
      registers,
    }),
    retriesDue: new Counter({
      name: "placement_retries_released_total",
      help: "Orders moved from the retry schedule back onto the placement stream",
      registers,
    }),
    oldestUnfinishedAge: new Gauge({
      name: "placement_oldest_unfinished_order_age_seconds",
      help: "Age (since intake) of the oldest order not yet placed or rejected, by status, parked orders aside (placement_parked_orders); 0 when there is none. Read from MongoDB by the actor process holding partition 0's sweep lock",
      labelNames: ["status"] as const,
      registers,
    }),
    parkedOrders: new Gauge({
      name: "placement_parked_orders",
      help: "Unfinished orders parked after their stream entry was dead-lettered (wait for `orders dlq replay`). Read from MongoDB by the actor process holding partition 0's sweep lock",
      registers,
    }),
    // The last `orders reconcile` run (src/process/reconcile-command.ts), as MongoDB holds it.
    reconcileLastRun: new Gauge({
      name: "orders_reconcile_last_run_timestamp_seconds",
      help: "When the last `orders reconcile` run ended (Unix seconds); 0 when none has run. Read from MongoDB by the actor process holding partition 0's sweep lock",
      registers,
    }),
    reconcileFindings: new Gauge({
      name: "orders_reconcile_findings",
      help: "Orders MongoDB and the venue disagree on (withdrawn, rejected or parked yet at the venue; placed yet unknown there or under another venue order id), as the last `orders reconcile` run found them",
      registers,
    }),
    reconcileLookupsFailed: new Gauge({
      name: "orders_reconcile_lookups_failed",
      help: "Venue look-ups the last `orders reconcile` run could not make (its check was incomplete)",
      registers,
    }),
    // Execution reports (docs/adr/0006-execution-reports.md): the gateway's side.
    executionReportsReceived: new Counter({
      name: "executions_reports_received_total",
      help: "Execution reports the gateway read from the venue feed, by what became of them (appended, duplicate, gap: held back until the resend fills the hole)",
      labelNames: ["result"] as const,
      registers,
    }),
    executionSequenceGaps: new Counter({
      name: "executions_sequence_gaps_total",
      help: "Holes in the venue feed's sequence numbers the gateway found (each answered with a resend request)",
      registers,
    }),
    executionGapOpenSeconds: new Gauge({
      name: "executions_gap_open_seconds",
      help: "How long the oldest unhealed hole in the venue feed has been open; 0 when there is none",
      registers,
    }),
    executionFeedReconnects: new Counter({
      name: "executions_feed_reconnects_total",
      help: "Connections to the venue feed the gateway (re)opened, by reason (start, closed, error, takeover)",
      labelNames: ["reason"] as const,
      registers,
    }),
    executionGatewayActive: new Gauge({
      name: "executions_gateway_active",
      help: "1 while this gateway holds the venue session's lease and reads the feed, 0 on standby",
      registers,
    }),
    executionFeedLoggedOn: new Gauge({
      name: "executions_feed_logged_on",
      help: "1 while this gateway is logged on to the venue's execution feed (only the active one is), else 0",
      registers,
    }),
    executionLastSequence: new Gauge({
      name: "executions_last_sequence",
      help: "The last sequence number the gateway appended (recorded durably with the append)",
      registers,
    }),
    // The execution actors' side.
    executionReportsApplied: new Counter({
      name: "executions_reports_applied_total",
      help: "Execution reports the execution actors handled, by outcome (applied, duplicate, overfill, not_placeable, unknown_order; refused: the store refused it while it took other writes, left pending)",
      labelNames: ["outcome"] as const,
      registers,
    }),
    executionApplyLag: new Histogram({
      name: "executions_apply_lag_seconds",
      help: "From the venue's transact time to the report's effect being durable in MongoDB",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    executionBatchSize: new Histogram({
      name: "executions_apply_batch_size",
      help: "Reports applied by one MongoDB bulk write",
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers,
    }),
    executionStreamLag: new Gauge({
      name: "executions_stream_lag",
      help: "Execution reports appended to the executions streams and not yet delivered to an execution actor (KEDA scales the execution actors on it)",
      registers,
    }),
    executionStreamPending: new Gauge({
      name: "executions_stream_pending",
      help: "Execution reports delivered to an execution actor and not yet acknowledged",
      registers,
    }),
    orderEventsPublished: new Counter({
      name: "orders_events_published_total",
      help: "Order updates appended to the accounts' event feeds, by result (published, failed)",
      labelNames: ["result"] as const,
      registers,
    }),
    orderEventSubscribers: new Gauge({
      name: "orders_events_subscribers",
      help: "WebSocket clients connected to /orders/events on this process",
      registers,
    }),
    venueExecutionReports: new Counter({
      name: "venue_execution_reports_total",
      help: "Execution reports the simulated venue generated, by execution type (trade, cancelled, expired)",
      labelNames: ["exec_type"] as const,
      registers,
    }),
    venueSubmissions: new Counter({
      name: "venue_submissions_total",
      help: "Orders submitted to the simulated venue, by result (placed, duplicate, failed, rejected)",
      labelNames: ["result"] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
