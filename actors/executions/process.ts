/**
 * The execution actors of a process (`executions` or `all`): a stream actor on the executions streams
 * with the apply behaviour, stream upkeep and gauges. Started by the entry point on the process's
 * shared connections (src/process/service.ts), like the placement actors.
 */

import { MongoExecutionStore } from "../../src/adapters/mongo/execution-store.ts";
import { RedisOrderApplyLocks } from "../../src/adapters/order-apply-locks.ts";
import { RedisOrderEvents } from "../../src/adapters/order-events.ts";
import { closeRedis, createRedisConnection, redisTarget } from "../../src/adapters/redis.ts";
import type { Config } from "../../src/config.ts";
import { systemClock } from "../../src/domain/ports.ts";
import type { Logger } from "../../src/logger.ts";
import type { Closer } from "../../src/process/lifecycle.ts";
import { withStartupRetry } from "../../src/process/lifecycle.ts";
import type { Shared } from "../../src/process/shared.ts";
import { createIoredisStreamPort } from "../runtime/redis-streams.ts";
import { DEFAULT_READ_BLOCK_MS, StreamActor } from "../runtime/stream-actor.ts";
import { createStreamUpkeep, runStreamUpkeep } from "../runtime/stream-upkeep.ts";
import { createExecutionBehaviour } from "./execution-actor.ts";

export async function startExecutionActors(
  config: Config,
  logger: Logger,
  shared: Shared,
  closers: Closer[],
): Promise<void> {
  const { metrics, keys } = shared;
  const log = logger.child({ component: "execution-actors" });
  const store = new MongoExecutionStore(shared.db, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    gate: shared.mongoGate,
    onDurableWrite: (kind, documents) => metrics.mongoDurableWrites.inc({ kind }, documents),
  });
  await withStartupRetry("execution indexes", log, () => store.ensureIndexes());
  const events = new RedisOrderEvents(shared.commands, keys, {
    retained: config.ORDER_EVENTS_RETAINED,
    metrics,
    logger: log,
  });
  const blocking = createRedisConnection(redisTarget(config), {
    name: "orders-executions-read",
    blockingReadMs: DEFAULT_READ_BLOCK_MS,
  });
  blocking.on("error", () => {});
  closers.push({ name: "redis-executions-blocking", close: () => closeRedis(blocking) });
  const port = createIoredisStreamPort(shared.commands);
  const behaviour = createExecutionBehaviour({
    store,
    // Longer than one batch's write may take (its MongoDB operations abort at 3 x MONGO_TIMEOUT_MS).
    locks: new RedisOrderApplyLocks(shared.commands, keys, config.MONGO_TIMEOUT_MS * 5),
    clock: systemClock,
    logger: log,
    batchMax: config.EXECUTION_BATCH_MAX,
    publish: (event) => void events.publish(event),
    observe: (outcome, lagSeconds) => {
      metrics.executionReportsApplied.inc({ outcome });
      if (outcome === "applied") metrics.executionApplyLag.observe(lagSeconds);
    },
    observeBatch: (size) => metrics.executionBatchSize.observe(size),
    onTransientFailure: (error, retryInMs) =>
      log.warn("applying execution reports failed; retrying", { error, retry_in_ms: retryInMs }),
  });
  const consumer = `${config.HOSTNAME}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const actor = new StreamActor({
    name: "executions",
    streams: keys.executionStreams,
    group: keys.executionGroup,
    consumer,
    deadLetterStream: keys.executionDeadLetterStream,
    blockingPort: createIoredisStreamPort(blocking),
    port,
    behaviour,
    concurrency: config.EXECUTION_CONCURRENCY,
    claimTimeoutMs: config.CLAIM_TIMEOUT_MS,
    reclaimIntervalMs: config.RECLAIM_INTERVAL_MS,
    maxDeliveries: config.MAX_DELIVERIES,
    observer: {
      readFailed: (streams, error, retryInMs) =>
        log.warn("reading the executions streams failed; retrying", {
          streams,
          error,
          retry_in_ms: retryInMs,
        }),
      inFlight: (count) => metrics.actorInFlight.set({ actor: "executions" }, count),
      handled: (result) => metrics.actorMessages.inc({ actor: "executions", result }),
      reclaimed: (count) => metrics.reclaimed.inc(count),
      deadLettered: (reason) => metrics.deadLettered.inc({ reason: `execution_${reason}` }),
      crashed: (loop, error, restartInMs) => {
        metrics.actorRestarts.inc({ actor: `executions-${loop}` });
        log.error("actor loop crashed; restarting", { loop, error, restart_in_ms: restartInMs });
      },
      handlerFailed: (entry, error) => {
        const code = (error as { code?: string }).code;
        const unknown = code === "UNKNOWN_ORDER";
        if (unknown) metrics.executionReportsApplied.inc({ outcome: "unknown_order" });
        if (code === "REPORT_REFUSED") metrics.executionReportsApplied.inc({ outcome: "refused" });
        log[unknown ? "warn" : "error"]("execution report not applied; the entry stays pending", {
          entry_id: entry.id,
          error,
        });
      },
    },
  });
  await withStartupRetry("execution consumer groups", log, () => actor.start());
  closers.push({ name: "execution-actor", close: () => actor.close(config.SHUTDOWN_DEADLINE_MS) });

  const upkeep = createStreamUpkeep({
    port,
    streams: keys.executionStreams,
    group: keys.executionGroup,
    deadLetterStream: keys.executionDeadLetterStream,
  });
  const timers = runStreamUpkeep(upkeep, {
    trimIntervalMs: config.TRIM_INTERVAL_MS,
    metricsIntervalMs: config.STREAM_METRICS_INTERVAL_MS,
    onMeasure: (m) => {
      metrics.executionStreamLag.set(m.lag);
      metrics.executionStreamPending.set(m.pending);
    },
    onError: (task, error) => log.warn(`executions ${task} failed`, { error }),
  });
  closers.push({ name: "execution-upkeep-timers", close: () => Promise.all(timers.map((t) => t.stop())) });
}
