/**
 * Builds each process kind from concrete adapters. Only this module and main.ts know which technology
 * stands behind each port. Every component has start() and an idempotent close(); shutdown runs in the
 * reverse order of start-up.
 */
import { swagger } from "@elysiajs/swagger";
import { type AnyElysia, Elysia } from "elysia";
import type { Redis } from "ioredis";
import type { Db, MongoClient } from "mongodb";
import { ExchangeBreaker } from "../actors/placement/exchange-breaker.ts";
import { createPlacementBehaviour } from "../actors/placement/placement-actor.ts";
import { createStreamUpkeep } from "../actors/placement/stream-upkeep.ts";
import { createSweeper } from "../actors/placement/sweeper.ts";
import { backoffDelay } from "../actors/runtime/backoff.ts";
import { every } from "../actors/runtime/periodic.ts";
import { createIoredisStreamPort } from "../actors/runtime/redis-streams.ts";
import { StreamActor } from "../actors/runtime/stream-actor.ts";
import { createMetrics, type Metrics, type ProcessKind } from "./adapters/metrics.ts";
import { createMongoClient, MongoIdempotencyStore, MongoOrderRepository } from "./adapters/mongo.ts";
import {
  awaitConnection,
  closeRedis,
  createRedisClient,
  pingRedis,
  RedisPlacementDispatcher,
} from "./adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "./adapters/redis-keys.ts";
import { type Config, databaseName } from "./config.ts";
import { uuidV7 } from "./domain/ids.ts";
import { systemClock } from "./domain/ports.ts";
import { createHttpExchange } from "./exchange/http-exchange.ts";
import { createInProcessExchange } from "./exchange/place-order.ts";
import type { Exchange } from "./exchange/port.ts";
import { createVenue, venueRoutes } from "./exchange/venue.ts";
import { httpMetrics } from "./http/http-metrics.ts";
import { opsRoutes, type ReadinessCheck } from "./http/ops-routes.ts";
import type { Logger } from "./logger.ts";
import { ordersController } from "./orders/index.ts";
import { createOrderService } from "./orders/service.ts";

export interface RunningProcess {
  port: number;
  /** Answers a request in process, without the network (tests use it as `app.handle`). */
  handle(request: Request): Promise<Response>;
  close(): Promise<void>;
}

/** Consumer names idle this long with nothing pending are removed from the group. */
const CONSUMER_MAX_IDLE_MS = 24 * 3_600_000;

type Closer = { name: string; close: () => Promise<unknown> | unknown };

/**
 * Start-up steps that need MongoDB or Redis are retried with backoff for a while: a process that starts
 * before its dependencies (or during a blip) should wait for them, not crash-loop.
 */
export const STARTUP_RETRY = { attempts: 20, backoff: { baseMs: 200, maxMs: 5_000 } } as const;

async function withStartupRetry<T>(name: string, logger: Logger, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= STARTUP_RETRY.attempts) throw error;
      const delay = backoffDelay(attempt, STARTUP_RETRY.backoff);
      logger.warn("start-up step failed; retrying", { step: name, attempt, retry_in_ms: delay, error });
      await Bun.sleep(delay);
    }
  }
}

/** Closes in reverse start order; every closer runs even when one fails. */
async function closeAll(closers: Closer[], logger: Logger): Promise<void> {
  for (const closer of [...closers].reverse()) {
    try {
      await closer.close();
    } catch (error) {
      logger.warn("close failed", { component: closer.name, error });
    }
  }
}

function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= close();
    return closing;
  };
}

interface Shared {
  mongo: MongoClient;
  db: Db;
  keys: RedisKeys;
  metrics: Metrics;
  commands: Redis;
}

async function connectShared(config: Config, kind: ProcessKind, closers: Closer[]): Promise<Shared> {
  const metrics = createMetrics(kind);
  const mongo = createMongoClient(config.MONGO_URL, config.MONGO_TIMEOUT_MS);
  closers.push({ name: "mongodb", close: () => mongo.close() });
  const commands = createRedisClient(config.REDIS_URL, {
    name: `orders-${kind}`,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    failFastWhenDisconnected: true,
  });
  commands.on("error", () => {}); // reconnects by itself; readiness and metrics report the outage
  closers.push({ name: "redis", close: () => closeRedis(commands) });
  await awaitConnection(commands, config.MONGO_TIMEOUT_MS);
  return {
    mongo,
    db: mongo.db(databaseName(config.MONGO_URL)),
    keys: createRedisKeys(config.REDIS_KEY_PREFIX, config.PLACEMENT_PARTITIONS),
    metrics,
    commands,
  };
}

/**
 * What /health/ready waits for. The API answers POST /orders per its contract with MongoDB alone (201
 * with Redis down: the sweeper dispatches later), so Redis being down must not take it out of its
 * Service; actors (and `all`) cannot place anything without Redis.
 */
function readinessChecks(shared: Shared, kind: "api" | "actors" | "all"): ReadinessCheck[] {
  const mongodb: ReadinessCheck = {
    name: "mongodb",
    ping: async (signal) => (await shared.db.command({ ping: 1 }, { signal })).ok === 1,
  };
  if (kind === "api") return [mongodb];
  return [mongodb, { name: "redis", ping: () => pingRedis(shared.commands) }];
}

function listen(app: AnyElysia, config: Config, logger: Logger, kind: ProcessKind): number {
  app.listen({ port: config.PORT, hostname: "0.0.0.0", maxRequestBodySize: 1024 * 1024 });
  const port = app.server?.port ?? config.PORT;
  logger.info("listening", {
    kind,
    port,
    swagger: kind === "api" || kind === "all" ? `http://127.0.0.1:${port}/swagger` : undefined,
  });
  return port;
}

/** The HTTP API, and with `withActors` the placement actors in the same process (`all`). */
export async function startService(
  config: Config,
  logger: Logger,
  kind: "api" | "actors" | "all",
): Promise<RunningProcess> {
  const closers: Closer[] = [];
  try {
    const shared = await connectShared(config, kind, closers);
    const orders = new MongoOrderRepository(shared.db, config.MONGO_TIMEOUT_MS);
    await withStartupRetry("order indexes", logger, () => orders.ensureIndexes());
    const app = new Elysia()
      .use(httpMetrics(shared.metrics))
      .use(opsRoutes(shared.metrics, readinessChecks(shared, kind)));

    if (kind === "api" || kind === "all") {
      const idempotency = new MongoIdempotencyStore(shared.db, config.MONGO_TIMEOUT_MS);
      await withStartupRetry("idempotency indexes", logger, () => idempotency.ensureIndexes());
      const service = createOrderService({
        orders,
        idempotency,
        dispatcher: new RedisPlacementDispatcher(shared.commands, shared.keys),
        clock: systemClock,
        ids: uuidV7,
        settings: {
          partitions: config.PLACEMENT_PARTITIONS,
          dispatchGraceMs: config.DISPATCH_GRACE_MS,
          idempotencyTtlMs: config.IDEMPOTENCY_TTL_HOURS * 3_600_000,
          idempotencyLeaseMs: config.REQUEST_DEADLINE_MS * 2,
        },
        hooks: {
          onDispatchFailed: (orderId, error) => {
            shared.metrics.dispatchFailures.inc();
            logger.warn("dispatch to the placement stream failed; the sweeper will dispatch it", {
              order_id: orderId,
              error,
            });
          },
          onAmbiguousWrite: (orderId, error, stored) =>
            logger.warn("ambiguous order write, read back", { order_id: orderId, error, stored }),
        },
      });
      app
        .use(
          swagger({
            path: "/swagger",
            exclude: ["/swagger", "/swagger/json"],
            documentation: {
              info: {
                title: "Order placement API",
                version: "1.0.0",
                description:
                  "Place stock orders. A 201 means the order is stored durably and its placement at the exchange is guaranteed.",
              },
              tags: [{ name: "orders" }, { name: "operations" }],
            },
          }),
        )
        .use(
          ordersController({
            service,
            metrics: shared.metrics,
            logger,
            deadlineMs: config.REQUEST_DEADLINE_MS,
          }),
        );
      if (!idempotency.serverExpires) {
        // No TTL index on this server (FerretDB): expire keys ourselves.
        const purge = every(
          60_000,
          () => idempotency.purgeExpired(new Date()),
          (error) => logger.warn("idempotency purge failed", { error }),
        );
        closers.push({ name: "idempotency-purge", close: () => purge.stop() });
      }
    }

    if (kind === "actors" || kind === "all") {
      await startActors(config, logger, shared, orders, closers);
    }

    const port = listen(app, config, logger, kind);
    // Stop accepting requests first on shutdown (it was started last).
    closers.push({ name: "http", close: () => app.stop() });
    return { port, handle: (request) => app.handle(request), close: once(() => closeAll(closers, logger)) };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}

function createExchange(config: Config): Exchange {
  return config.EXCHANGE_URL
    ? createHttpExchange({ baseUrl: config.EXCHANGE_URL, timeoutMs: config.BREAKER_TIMEOUT_MS * 2 })
    : createInProcessExchange({
        failureRate: config.EXCHANGE_FAILURE_RATE,
        latencyMs: config.EXCHANGE_LATENCY_MS,
      });
}

async function startActors(
  config: Config,
  logger: Logger,
  shared: Shared,
  orders: MongoOrderRepository,
  closers: Closer[],
) {
  const { metrics, keys } = shared;
  const blocking = createRedisClient(config.REDIS_URL, { name: "orders-actors-read" });
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

  const behaviour = createPlacementBehaviour({
    orders,
    exchange,
    breaker,
    clock: systemClock,
    logger,
    leaseMs: config.CLAIM_TIMEOUT_MS,
    retry: { baseMs: config.RETRY_BASE_DELAY_MS, maxMs: config.RETRY_MAX_DELAY_MS },
    deadLetter: async (fields) => {
      await port.add(keys.deadLetterStream, { ...fields, dead_lettered_at: new Date().toISOString() });
      metrics.deadLettered.inc({ reason: fields.kind ?? "unknown" });
    },
    observe: (outcome, seconds) => {
      metrics.placements.inc({ outcome });
      if (seconds !== null) metrics.placementAttemptDuration.observe({ outcome }, seconds);
    },
  });
  const actor = new StreamActor({
    name: "placement",
    streams: keys.placementStreams,
    group: keys.placementGroup,
    consumer: `${process.env.HOSTNAME ?? "local"}-${process.pid}-${crypto.randomUUID().slice(0, 8)}`,
    deadLetterStream: keys.deadLetterStream,
    blockingPort: createIoredisStreamPort(blocking),
    port,
    behaviour,
    concurrency: config.ACTOR_CONCURRENCY,
    claimTimeoutMs: config.CLAIM_TIMEOUT_MS,
    reclaimIntervalMs: config.RECLAIM_INTERVAL_MS,
    maxDeliveries: config.MAX_DELIVERIES,
    observer: {
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

  const sweeper = createSweeper({
    orders,
    dispatcher: new RedisPlacementDispatcher(shared.commands, keys),
    clock: systemClock,
    logger,
    redispatchBackoff: {
      baseMs: config.DISPATCH_GRACE_MS,
      maxMs: Math.max(config.DISPATCH_GRACE_MS, 300_000),
    },
    onRedispatched: (reason) => metrics.sweeperRedispatched.inc({ reason }),
  });
  const upkeep = createStreamUpkeep({
    port,
    streams: keys.placementStreams,
    group: keys.placementGroup,
    deadLetterStream: keys.deadLetterStream,
  });
  const warn = (task: string) => (error: unknown) => logger.warn(`${task} failed`, { error });
  const timers = [
    every(config.SWEEP_INTERVAL_MS, sweeper.sweepOnce, warn("sweep")),
    every(
      config.TRIM_INTERVAL_MS,
      async () => {
        await upkeep.trimOnce();
        await upkeep.pruneConsumers(CONSUMER_MAX_IDLE_MS);
      },
      warn("trim"),
    ),
    every(
      config.STREAM_METRICS_INTERVAL_MS,
      async () => {
        const m = await upkeep.measure();
        metrics.streamLength.set(m.length);
        metrics.streamLag.set(m.lag);
        metrics.streamPending.set(m.pending);
        metrics.deadLetterEntries.set(m.deadLetters);
      },
      warn("stream metrics"),
    ),
  ];
  // Timers stop before the actor drains (they were started after it).
  closers.push({ name: "upkeep-timers", close: () => Promise.all(timers.map((t) => t.stop())) });
}

/** The simulated venue: no MongoDB or Redis, always ready. */
export async function startExchange(config: Config, logger: Logger): Promise<RunningProcess> {
  const metrics = createMetrics("exchange");
  const venue = createVenue({
    failureRate: config.EXCHANGE_FAILURE_RATE,
    latencyMs: config.EXCHANGE_LATENCY_MS,
  });
  const app = new Elysia()
    .use(httpMetrics(metrics))
    .use(opsRoutes(metrics, []))
    .use(venueRoutes(venue, metrics));
  const port = listen(app, config, logger, "exchange");
  return { port, handle: (request) => app.handle(request), close: once(async () => void (await app.stop())) };
}
