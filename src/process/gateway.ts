/**
 * The `gateway` process: the execution gateway (src/executions/gateway.ts) on Redis alone, with the
 * operations routes. Ready means Redis answers (a standby is ready: it takes over without a restart).
 * `orders all` runs the same gateway beside its other work (`runGateway`).
 */
import { Elysia } from "elysia";
import { RedisExecutionLog } from "../adapters/execution-log.ts";
import { createMetrics, type Metrics } from "../adapters/metrics.ts";
import {
  awaitConnection,
  closeRedis,
  createRedisConnection,
  pingRedis,
  type RedisConnection,
  redisTarget,
} from "../adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../adapters/redis-keys.ts";
import { type Config, exchangeFeedUrl } from "../config.ts";
import { createExecutionGateway } from "../executions/gateway.ts";
import { opsRoutes } from "../http/ops-routes.ts";
import type { Logger } from "../logger.ts";
import { type Closer, closeAll, listen, once, type RunningProcess } from "./lifecycle.ts";

/** Starts a gateway on `redis`; pushes its closer. Throws when no feed URL is configured. */
export function runGateway(
  config: Config,
  logger: Logger,
  redis: RedisConnection,
  keys: RedisKeys,
  metrics: Metrics,
  closers: Closer[],
): void {
  const feedUrl = exchangeFeedUrl(config);
  if (feedUrl === null) throw new Error("the gateway needs EXCHANGE_FEED_URL or EXCHANGE_URL");
  const gateway = createExecutionGateway({
    feedUrl,
    log: new RedisExecutionLog(redis, keys),
    leaseMs: config.GATEWAY_LEASE_MS,
    reconnect: { baseMs: config.GATEWAY_RECONNECT_BASE_MS, maxMs: config.GATEWAY_RECONNECT_MAX_MS },
    logger: logger.child({ component: "gateway" }),
    observer: {
      received: (result, count) => {
        if (count > 0) metrics.executionReportsReceived.inc({ result }, count);
      },
      gapFound: () => metrics.executionSequenceGaps.inc(),
      gapOpenSeconds: (seconds) => metrics.executionGapOpenSeconds.set(seconds),
      connected: (reason) => metrics.executionFeedReconnects.inc({ reason }),
      active: (active) => metrics.executionGatewayActive.set(active ? 1 : 0),
      loggedOn: (loggedOn) => metrics.executionFeedLoggedOn.set(loggedOn ? 1 : 0),
      lastSequence: (seq) => metrics.executionLastSequence.set(seq),
    },
  });
  gateway.start();
  closers.push({ name: "execution-gateway", close: () => gateway.close() });
}

export async function startGateway(config: Config, logger: Logger): Promise<RunningProcess> {
  const closers: Closer[] = [];
  try {
    const metrics = createMetrics("gateway");
    const redis = createRedisConnection(redisTarget(config), {
      name: "orders-gateway",
      // Appends are pipelined: in a burst thousands wait in line, far longer than one request-path
      // command may (a timed-out append restarts the feed from what Redis recorded, losing nothing).
      commandTimeoutMs: Math.max(config.REDIS_COMMAND_TIMEOUT_MS, 5_000),
      failFastWhenDisconnected: true,
    });
    redis.on("error", () => {}); // reconnects by itself; readiness reports the outage
    closers.push({ name: "redis", close: () => closeRedis(redis) });
    await awaitConnection(redis, config.MONGO_TIMEOUT_MS);
    const keys = createRedisKeys(
      config.REDIS_KEY_PREFIX,
      config.PLACEMENT_PARTITIONS,
      config.EXECUTION_PARTITIONS,
    );
    runGateway(config, logger, redis, keys, metrics, closers);
    const ops = new Elysia().use(opsRoutes(metrics, [{ name: "redis", ping: () => pingRedis(redis) }]));
    const opsPort = listen(ops, config.OPS_PORT, logger, { kind: "gateway", surface: "operations" });
    closers.push({ name: "operations http", close: () => ops.stop() });
    return {
      port: null,
      opsPort,
      handle: () => Promise.resolve(new Response("Not found", { status: 404 })),
      handleOps: (request) => ops.handle(request),
      close: once(() => closeAll(closers, logger)),
    };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}
