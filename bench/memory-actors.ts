/**
 * The placement actor over an in-memory order store, as a process of its own: the real actor runtime,
 * placement behaviour, breaker, HTTP venue client, retry mover and Redis, without MongoDB. It measures
 * the actors and Redis alone (bench/placement.ts's and bench/scale.ts's "memory" rows); the service
 * itself has no in-memory store. Moved here from bench/placement.ts (its --child mode), unchanged for
 * one Redis; with REDIS_CLUSTER_NODES it connects to the cluster the way the `actors` process does.
 *
 *   bun bench/memory-actors.ts   (environment as for `orders actors`; prints "ready", stops on SIGTERM)
 */
import { resolve } from "node:path";
import { Redis } from "ioredis";
import { ExchangeBreaker } from "../actors/placement/exchange-breaker.ts";
import { createPlacementBehaviour } from "../actors/placement/placement-actor.ts";
import { createIoredisStreamPort } from "../actors/runtime/redis-streams.ts";
import { DEFAULT_READ_BLOCK_MS, StreamActor } from "../actors/runtime/stream-actor.ts";
import { RedisPlacementState } from "../src/adapters/placement-state.ts";
import {
  awaitConnection,
  createRedisConnection,
  type RedisConnection,
  redisTarget,
} from "../src/adapters/redis.ts";
import { createRedisKeys } from "../src/adapters/redis-keys.ts";
import { type Config, loadConfig } from "../src/config.ts";
import { type FinalWriteResult, type OrderRepository, systemClock } from "../src/domain/ports.ts";
import { createHttpExchange } from "../src/exchange/http-exchange.ts";
import { silentLogger } from "../src/logger.ts";
import { every } from "../src/support/periodic.ts";
import { type OwnedProcess, spawnOwned } from "../test/support/servers/child-process.ts";
import { type Cleanup, ROOT } from "../test/support/system.ts";

/** Starts one in-memory placement actor process with `env`; stopped (SIGTERM, then SIGKILL) at cleanup. */
export async function spawnMemoryActors(
  env: Record<string, string>,
  cleanup: Cleanup,
): Promise<{ process: OwnedProcess }> {
  const child = spawnOwned("bench-actor", ["bun", resolve(ROOT, "bench/memory-actors.ts")], {
    env: { ...process.env, ...env },
    cwd: ROOT,
  });
  cleanup.add(async () => {
    child.signal("SIGTERM");
    await Promise.race([child.exited, Bun.sleep(5_000)]);
    child.signal("SIGKILL");
  });
  await child.waitForOutput(/^ready$/m, 30_000);
  return { process: child };
}

/**
 * The command and read connections: one Redis as bench/placement.ts always had them; a cluster's with
 * the `actors` process's options (src/process/shared.ts, actors/placement/process.ts).
 */
async function connect(config: Config): Promise<{ commands: RedisConnection; blocking: RedisConnection }> {
  if (!config.REDIS_CLUSTER_NODES) {
    return {
      commands: new Redis(config.REDIS_URL, { maxRetriesPerRequest: null }),
      blocking: new Redis(config.REDIS_URL, { maxRetriesPerRequest: null }),
    };
  }
  const commands = createRedisConnection(redisTarget(config), {
    name: "bench-memory-actors",
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    failFastWhenDisconnected: true,
  });
  const blocking = createRedisConnection(redisTarget(config), {
    name: "bench-memory-actors-read",
    blockingReadMs: DEFAULT_READ_BLOCK_MS,
  });
  for (const connection of [commands, blocking]) {
    connection.on("error", () => {});
    if (!(await awaitConnection(connection, 30_000))) throw new Error("the Redis Cluster did not answer");
  }
  return { commands, blocking };
}

export async function runMemoryActors(): Promise<void> {
  const config = loadConfig();
  const keys = createRedisKeys(config.REDIS_KEY_PREFIX, config.PLACEMENT_PARTITIONS);
  const { commands, blocking } = await connect(config);
  const port = createIoredisStreamPort(commands);
  const orders = new MemoryOrderRepository();
  const leases = new RedisPlacementState(commands, keys, config.PLACEMENT_TRACK_TTL_MS);
  const exchange = createHttpExchange({
    baseUrl: config.EXCHANGE_URL!,
    timeoutMs: config.BREAKER_TIMEOUT_MS * 2,
  });
  const breaker = new ExchangeBreaker(exchange, {
    timeoutMs: config.BREAKER_TIMEOUT_MS,
    errorThresholdPercent: config.BREAKER_ERROR_THRESHOLD_PERCENT,
    volumeThreshold: config.BREAKER_VOLUME_THRESHOLD,
    resetTimeoutMs: config.BREAKER_RESET_TIMEOUT_MS,
  });
  const actor = new StreamActor({
    name: "placement",
    streams: keys.placementStreams,
    group: keys.placementGroup,
    consumer: `bench-${process.pid}`,
    deadLetterStream: keys.deadLetterStream,
    blockingPort: createIoredisStreamPort(blocking),
    port,
    behaviour: createPlacementBehaviour({
      orders,
      leases,
      exchange,
      breaker,
      clock: systemClock,
      logger: silentLogger,
      leaseMs: config.CLAIM_TIMEOUT_MS,
      retry: { baseMs: config.RETRY_BASE_DELAY_MS, maxMs: config.RETRY_MAX_DELAY_MS },
      deadLetter: async (fields) => void (await port.add(keys.deadLetterStream, fields)),
    }),
    concurrency: config.ACTOR_CONCURRENCY,
    claimTimeoutMs: config.CLAIM_TIMEOUT_MS,
    reclaimIntervalMs: config.RECLAIM_INTERVAL_MS,
    maxDeliveries: config.MAX_DELIVERIES,
  });
  await actor.start();
  const retries = every(
    config.RETRY_POLL_INTERVAL_MS,
    () => leases.moveDueRetries(new Date()),
    () => {},
  );
  console.log("ready");
  await new Promise<void>((resolveStop) => process.once("SIGTERM", () => resolveStop()));
  await retries.stop();
  await actor.close(2_000);
  breaker.shutdown();
  commands.disconnect();
  blocking.disconnect();
  process.exit(0);
}

/**
 * The final writes of the OrderRepository contract in memory, for one process: the placement actor
 * reads nothing on the happy path (the order travels on its entry), so this is all it needs.
 */
class MemoryOrderRepository
  implements Pick<OrderRepository, "findById" | "markPlaced" | "markRejected" | "park">
{
  private readonly outcomes = new Map<string, string>();

  async findById() {
    return null;
  }
  async markPlaced(id: string, venueOrderId: string): Promise<FinalWriteResult> {
    return this.finish(id, `placed:${venueOrderId}`);
  }
  async markRejected(id: string, reason: string): Promise<FinalWriteResult> {
    return this.finish(id, `rejected:${reason}`);
  }
  async park() {}
  private finish(id: string, outcome: string): FinalWriteResult {
    const existing = this.outcomes.get(id);
    if (existing === undefined) {
      this.outcomes.set(id, outcome);
      return "applied";
    }
    return existing === outcome ? "already" : "conflict";
  }
}

// Last, after the class above is initialised (the call below never returns before SIGTERM).
if (import.meta.main) await runMemoryActors();
