/**
 * The placement actors of a process (`actors` or `all`): the breaker, the stream actor with the
 * placement behaviour, the retry mover, the sweeper, stream upkeep and gauges. Started by the entry
 * point on the process's shared connections (src/process/service.ts).
 */
import { MongoReconciliationStore } from "../../src/adapters/mongo/reconciliation-store.ts";
import { RedisOrderEvents } from "../../src/adapters/order-events.ts";
import { closeRedis, createRedisConnection, redisTarget } from "../../src/adapters/redis.ts";
import type { Config } from "../../src/config.ts";
import { systemClock } from "../../src/domain/ports.ts";
import { createHttpExchange } from "../../src/exchange/http-exchange.ts";
import { createInProcessExchange } from "../../src/exchange/place-order.ts";
import type { Exchange } from "../../src/exchange/port.ts";
import type { Logger } from "../../src/logger.ts";
import type { Closer } from "../../src/process/lifecycle.ts";
import { withStartupRetry } from "../../src/process/lifecycle.ts";
import type { Shared } from "../../src/process/shared.ts";
import { every } from "../../src/support/periodic.ts";
import { createIoredisStreamPort } from "../runtime/redis-streams.ts";
import { DEFAULT_READ_BLOCK_MS, StreamActor } from "../runtime/stream-actor.ts";
import { createStreamUpkeep, runStreamUpkeep } from "../runtime/stream-upkeep.ts";
import { ExchangeBreaker } from "./exchange-breaker.ts";
import { createOldestWaitingLookup } from "./oldest-waiting.ts";
import { createPlacementBehaviour, placementHandlers } from "./placement-actor.ts";
import { createSweeper } from "./sweeper.ts";

/**
 * The most of the time the sweeper and the end-to-end monitor may spend on their MongoDB scans. On a
 * store that cannot serve them from an index (FerretDB filters and sorts a backlog itself: 1.5 s per
 * pass at 20,000 waiting orders, measured) an unthrottled pass every second starved the store and cut
 * placement to a fifth; on MongoDB the passes take milliseconds and keep their interval.
 */
const SCAN_DUTY_CYCLE = 0.05;

/** A read loop without progress this long, with entries waiting, fails /health/live. */
const STALL_LIMIT_MS = 30_000;

function createExchange(config: Config): Exchange {
  return config.EXCHANGE_URL
    ? createHttpExchange({ baseUrl: config.EXCHANGE_URL, timeoutMs: config.BREAKER_TIMEOUT_MS * 2 })
    : createInProcessExchange({
        failureRate: config.EXCHANGE_FAILURE_RATE,
        latencyMs: config.EXCHANGE_LATENCY_MS,
      });
}

export async function startPlacementActors(
  config: Config,
  logger: Logger,
  shared: Shared,
  closers: Closer[],
): Promise<void> {
  const { metrics, keys, orders, placementState } = shared;
  // The read loop's own connection (a Cluster client with REDIS_CLUSTER_NODES): its timeouts sit just
  // above the read's BLOCK time, so a dead or stopped Redis is noticed and the connection replaced.
  const blocking = createRedisConnection(redisTarget(config), {
    name: "orders-actors-read",
    blockingReadMs: DEFAULT_READ_BLOCK_MS,
  });
  blocking.on("error", () => {});
  closers.push({ name: "redis-blocking", close: () => closeRedis(blocking) });
  const port = createIoredisStreamPort(shared.commands);
  const exchange = createExchange(config);
  const breakerStates = { closed: 0, "half-open": 1, open: 2 } as const;
  const breaker = new ExchangeBreaker(exchange, {
    timeoutMs: config.BREAKER_TIMEOUT_MS,
    errorThresholdPercent: config.BREAKER_ERROR_THRESHOLD_PERCENT,
    volumeThreshold: config.BREAKER_VOLUME_THRESHOLD,
    resetTimeoutMs: config.BREAKER_RESET_TIMEOUT_MS,
    onStateChange: (state) => {
      metrics.breakerState.set(breakerStates[state]);
      metrics.breakerTransitions.inc({ to: state });
      logger.warn("exchange circuit breaker changed state", { state });
    },
  });
  metrics.breakerState.set(0);
  closers.push({ name: "breaker", close: () => breaker.shutdown() });

  const events = new RedisOrderEvents(shared.commands, keys, {
    retained: config.ORDER_EVENTS_RETAINED,
    metrics,
    logger,
  });
  const behaviour = createPlacementBehaviour({
    orders,
    leases: placementState,
    exchange,
    breaker,
    clock: systemClock,
    logger,
    leaseMs: config.CLAIM_TIMEOUT_MS,
    submitWithinMs: config.CLAIM_TIMEOUT_MS - config.BREAKER_TIMEOUT_MS,
    maxAttempts: config.PLACEMENT_MAX_ATTEMPTS || Number.POSITIVE_INFINITY,
    maxAgeMs: config.PLACEMENT_MAX_AGE_MS || Number.POSITIVE_INFINITY,
    retry: { baseMs: config.RETRY_BASE_DELAY_MS, maxMs: config.RETRY_MAX_DELAY_MS },
    venueSlots: config.ACTOR_CONCURRENCY,
    deadLetter: async (fields) => {
      await port.add(keys.deadLetterStream, { ...fields, dead_lettered_at: new Date().toISOString() });
      metrics.deadLettered.inc({ reason: fields.kind ?? "unknown" });
    },
    observe: (outcome, seconds, duplicateAtVenue) => {
      metrics.placements.inc({ outcome });
      if (duplicateAtVenue) metrics.venueDuplicates.inc();
      if (seconds !== null) metrics.placementAttemptDuration.observe({ outcome }, seconds);
    },
    onFinalWriteMismatch: (_orderId, result) => metrics.finalWriteMismatches.inc({ result }),
    onOutcomeWritten: (order, status, reason) => {
      if (order.account === undefined) return;
      void events.publish({
        order_id: order._id,
        account: order.account,
        status,
        at: systemClock.now(),
        filled_quantity: 0,
        average_price_cents: null,
        rejection_reason: reason,
      });
    },
  });
  metrics.measureVenueInFlight(() => behaviour.atVenue());
  const consumer = `${config.HOSTNAME}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const actor = new StreamActor({
    name: "placement",
    streams: keys.placementStreams,
    group: keys.placementGroup,
    consumer,
    deadLetterStream: keys.deadLetterStream,
    blockingPort: createIoredisStreamPort(blocking),
    port,
    behaviour,
    concurrency: placementHandlers(config.ACTOR_CONCURRENCY),
    claimTimeoutMs: config.CLAIM_TIMEOUT_MS,
    reclaimIntervalMs: config.RECLAIM_INTERVAL_MS,
    maxDeliveries: config.MAX_DELIVERIES,
    observer: {
      readFailed: (streams, error, retryInMs) => {
        metrics.readFailures.inc();
        logger.warn("reading the placement stream failed; retrying", {
          streams,
          error,
          retry_in_ms: retryInMs,
        });
      },
      inFlight: (count) => metrics.actorInFlight.set({ actor: "placement" }, count),
      handled: (result) => metrics.actorMessages.inc({ actor: "placement", result }),
      reclaimed: (count) => metrics.reclaimed.inc(count),
      missingPayload: (count) => metrics.reclaimedWithoutPayload.inc(count),
      deadLettered: (reason) => metrics.deadLettered.inc({ reason }),
      crashed: (loop, error, restartInMs) => {
        metrics.actorRestarts.inc({ actor: `placement-${loop}` });
        logger.error("actor loop crashed; restarting", { loop, error, restart_in_ms: restartInMs });
      },
      handlerFailed: (entry, error) =>
        logger.error("placement handler failed; the entry stays pending", {
          entry_id: entry.id,
          order_id: entry.fields?.order_id,
          error,
        }),
    },
  });
  await withStartupRetry("consumer groups", logger, () => actor.start());
  closers.push({ name: "placement-actor", close: () => actor.close(config.SHUTDOWN_DEADLINE_MS) });

  // Long enough to outlast a pass (a slow one included), so that two processes never sweep at once.
  const sweepLockMs = Math.max(config.SWEEP_INTERVAL_MS * 5, 30_000);
  const sweeper = createSweeper({
    orders,
    dispatcher: placementState,
    clock: systemClock,
    logger,
    partitions: config.PLACEMENT_PARTITIONS,
    holdLock: (partition) => placementState.holdSweepLock(partition, consumer, sweepLockMs),
    canPlace: () => breaker.state === "closed",
    onPass: (kind) => metrics.sweeperPasses.inc({ kind }),
    onRedispatched: (reason) => metrics.sweeperRedispatched.inc({ reason }),
    onWithdrawn: (orderId) => {
      metrics.orderWithdrawals.inc({ by: "sweeper", result: "withdrawn" });
      logger.warn("order withdrawn by the sweeper (its API could not finish the withdrawal)", {
        order_id: orderId,
      });
    },
  });
  const reconciliations = new MongoReconciliationStore(shared.db, config.MONGO_TIMEOUT_MS);
  /** What the end-to-end monitor exports; only the process running it keeps series. */
  const monitorGauges = [
    metrics.oldestUnfinishedAge,
    metrics.parkedOrders,
    metrics.reconcileLastRun,
    metrics.reconcileFindings,
    metrics.reconcileLookupsFailed,
  ];
  const oldestUnfinished = createOldestWaitingLookup({
    orders,
    clock: systemClock,
    graceMs: config.DISPATCH_GRACE_MS,
  });
  const upkeep = createStreamUpkeep({
    port,
    streams: keys.placementStreams,
    group: keys.placementGroup,
    deadLetterStream: keys.deadLetterStream,
  });
  const warn = (task: string) => (error: unknown) => logger.warn(`${task} failed`, { error });
  // Liveness: the read loop made no progress for STALL_LIMIT_MS although entries wait, and Redis still
  // answers (the lag was measured recently: with Redis down altogether the pod is not restarted in a
  // loop, the outage is readiness's business).
  let waiting = { lag: 0, measuredAt: 0 };
  shared.liveness.push({
    name: "placement-read-loop",
    alive: () =>
      !(
        actor.stalledForMs() > STALL_LIMIT_MS &&
        waiting.lag > 0 &&
        Date.now() - waiting.measuredAt < 3 * config.STREAM_METRICS_INTERVAL_MS
      ),
  });
  const timers = [
    every(
      config.RETRY_POLL_INTERVAL_MS,
      async () => metrics.retriesDue.inc(await placementState.moveDueRetries(systemClock.now())),
      warn("retry release"),
    ),
    every(config.SWEEP_INTERVAL_MS, sweeper.sweepOnce, warn("sweep"), { maxDutyCycle: SCAN_DUTY_CYCLE }),
    ...runStreamUpkeep(upkeep, {
      trimIntervalMs: config.TRIM_INTERVAL_MS,
      metricsIntervalMs: config.STREAM_METRICS_INTERVAL_MS,
      onMeasure: (m) => {
        waiting = { lag: m.lag, measuredAt: Date.now() };
        metrics.streamLength.set(m.length);
        metrics.streamLag.set(m.lag);
        metrics.streamPending.set(m.pending);
        metrics.deadLetterEntries.set(m.deadLetters);
      },
      onError: (task, error) => warn(task)(error),
    }),
    // The end-to-end monitor: from MongoDB, whatever the streams say (an order lost between them
    // shows). One process computes it (the one sweeping partition 0); the others drop their series.
    every(
      Math.max(config.STREAM_METRICS_INTERVAL_MS, 15_000),
      async () => {
        if (!(await placementState.holdSweepLock(0, consumer, sweepLockMs))) {
          for (const gauge of monitorGauges) gauge.reset();
          return;
        }
        const [oldest, parked, reconciled] = await Promise.all([
          oldestUnfinished(),
          orders.countParked(),
          reconciliations.last(),
        ]);
        metrics.reconcileLastRun.set(reconciled ? reconciled.at.getTime() / 1000 : 0);
        metrics.reconcileFindings.set(reconciled?.findings ?? 0);
        metrics.reconcileLookupsFailed.set(reconciled?.lookups_failed ?? 0);
        const nowMs = systemClock.now().getTime();
        for (const status of ["accepted", "placing"] as const) {
          const found = oldest.find((o) => o.status === status);
          const ageSeconds = found ? Math.max(0, (nowMs - found.created_at.getTime()) / 1000) : 0;
          metrics.oldestUnfinishedAge.set({ status }, ageSeconds);
        }
        metrics.parkedOrders.set(parked);
      },
      warn("end-to-end metrics"),
      { maxDutyCycle: SCAN_DUTY_CYCLE },
    ),
  ];
  // Timers stop before the actor drains (they were started after it).
  closers.push({ name: "upkeep-timers", close: () => Promise.all(timers.map((t) => t.stop())) });
}
