/**
 * Fixtures shared by the placement integration tests, the fault tests and bench/placement.ts: the
 * simulated venue and actor processes, orders pre-loaded straight into MongoDB and the stream, and
 * read-outs of MongoDB, the venue's /stats and a process's /metrics. Everything a test starts is
 * registered in a `Cleanup` so that afterAll stops it even when the test failed half-way.
 */
import { beforeAll } from "bun:test";
import { Cluster, Redis } from "ioredis";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { RedisPlacementState } from "../../src/adapters/placement-state.ts";
import { parseClusterNodes } from "../../src/adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../../src/adapters/redis-keys.ts";
import { uuidV7 } from "../../src/domain/ids.ts";
import { newOrderRecord, type OrderRecord, partitionOf } from "../../src/domain/order.ts";
import type { DispatchedOrder } from "../../src/domain/ports.ts";
import { type RedisCluster, startRedisCluster } from "./servers/servers.ts";
import {
  type Cleanup,
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  ROOT,
  type Servers,
  type ServiceProcess,
  spawnService,
} from "./system.ts";
import { waitFor } from "./wait-for.ts";

export type Env = Record<string, string>;

/**
 * The Redis a fault test's deployment runs on: the file's own redis-server (`standalone`), or a real
 * Redis Cluster of 3 masters and 3 replicas (`cluster`: REDIS_CLUSTER_NODES, which switches every
 * Redis connection of every process to the Cluster client). A test body written once runs in both
 * modes with `describe.each(REDIS_MODES)` and `useRedisMode(mode, cleanup)`.
 */
export type RedisMode = "standalone" | "cluster";
export const REDIS_MODES: readonly RedisMode[] = ["standalone", "cluster"];

export interface PlacementRedis {
  readonly mode: RedisMode;
  /** The cluster in cluster mode (once the describe block's beforeAll has run), else undefined. */
  readonly cluster: RedisCluster | undefined;
  /** PLACEMENT_PARTITIONS: 1 standalone (as these tests always ran), 6 on the cluster (over 3 masters). */
  readonly partitions: number;
  /**
   * Actor processes a test keeps running at once: 1 standalone (as these tests always ran); 2 on the
   * cluster, so that a surviving process is already reading every partition when another one dies.
   */
  readonly actorProcesses: number;
  /** The tag of a test's printed lines: `[name]` standalone, `[name/cluster]` on the cluster. */
  tag(name: string): string;
}

/**
 * The Redis of `mode` for the tests of the enclosing describe block. Cluster mode starts one Redis
 * Cluster in the block's beforeAll (once for all its tests: a cluster takes seconds to form) and stops
 * it in the file's `cleanup`, after the processes the tests spawned (cleanup runs newest first).
 */
export function useRedisMode(mode: RedisMode, cleanup: Cleanup): PlacementRedis {
  let cluster: RedisCluster | undefined;
  if (mode === "cluster") {
    beforeAll(async () => {
      cluster = await startRedisCluster();
      cleanup.add(() => cluster?.stop());
    }, 90_000);
  }
  return {
    mode,
    get cluster() {
      if (mode === "cluster" && !cluster) throw new Error("the Redis Cluster starts in beforeAll");
      return cluster;
    },
    partitions: mode === "cluster" ? 6 : 1,
    actorProcesses: mode === "cluster" ? 2 : 1,
    tag: (name) => (mode === "cluster" ? `[${name}/cluster]` : `[${name}]`),
  };
}

/**
 * An isolated deployment's environment with timings for tests. The MongoDB-wire server here may be
 * FerretDB on SQLite, which takes tens of milliseconds per write and queues them: generous MongoDB
 * timeouts and a moderate actor concurrency keep the tests about placement, not about that queue.
 */
export function placementEnv(
  servers: Servers,
  overrides: Env = {},
  options: { redisCluster?: RedisCluster; redis?: PlacementRedis } = {},
): Env {
  const cluster = options.redisCluster ?? options.redis?.cluster;
  return isolatedEnv(servers, {
    // Cluster mode: every Redis use goes to the cluster; REDIS_URL (still validated) names one seed.
    ...(cluster
      ? {
          REDIS_CLUSTER_NODES: cluster.seeds,
          REDIS_URL: `redis://${cluster.nodes[0]}`,
        }
      : {}),
    ...(options.redis ? { PLACEMENT_PARTITIONS: String(options.redis.partitions) } : {}),
    LOG_LEVEL: "warn",
    MONGO_TIMEOUT_MS: "10000",
    REQUEST_DEADLINE_MS: "20000",
    ACTOR_CONCURRENCY: "16",
    SWEEP_INTERVAL_MS: "500",
    RECLAIM_INTERVAL_MS: "250",
    DISPATCH_GRACE_MS: "5000",
    RETRY_BASE_DELAY_MS: "50",
    RETRY_MAX_DELAY_MS: "500",
    STREAM_METRICS_INTERVAL_MS: "500",
    ...overrides,
  });
}

/** A real `exchange` process with the given failure rate and latency. */
export async function spawnVenue(
  env: Env,
  settings: { failureRate: number; latencyMs: number },
  cleanup: Cleanup,
): Promise<ServiceProcess> {
  const venue = await spawnService("exchange", {
    ...env,
    EXCHANGE_FAILURE_RATE: String(settings.failureRate),
    EXCHANGE_LATENCY_MS: String(settings.latencyMs),
  });
  cleanup.add(() => venue.process.kill());
  return venue;
}

/** A real `actors` process; killed (-9) at cleanup if the test did not end it. */
export async function spawnActors(env: Env, cleanup: Cleanup): Promise<ServiceProcess> {
  const actors = await spawnService("actors", env);
  cleanup.add(() => actors.process.kill());
  return actors;
}

/**
 * A venue answering after `venueLatencyMs`, `count` orders pre-loaded, `peers` actor processes reading
 * them (none by default), and a first actor process that holds at least `inFlight` of them in flight
 * (leased in Redis, waiting for the venue's answer): the starting point for killing or stopping an
 * actor mid-placement while, with peers, other processes keep reading every partition. `held`: the
 * orders the first process holds (leased, their entries pending at its consumer).
 */
export async function firstActorHoldingOrders(
  env: Env,
  cleanup: Cleanup,
  options: { venueLatencyMs: number; count?: number; inFlight?: number; peers?: number },
) {
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: options.venueLatencyMs }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const ids = await preloadOrders(env, options.count ?? 40);
  const { redis, keys } = redisFor(env, cleanup);
  const peers: ServiceProcess[] = [];
  for (let i = 0; i < (options.peers ?? 0); i++) peers.push(await spawnActors(actorEnv, cleanup));
  const first = await spawnActors(actorEnv, cleanup);
  const inFlight = options.inFlight ?? 8;
  const held = () => ordersHeldBy(first, redis, keys);
  await waitFor(
    async () =>
      ((await metricValue(first, "actor_in_flight_messages", { actor: "placement" })) ?? 0) >= inFlight &&
      (await held()).length >= inFlight,
    { timeoutMs: 30_000, intervalMs: 50, message: "first actor holds orders in flight" },
  );
  return { venue, actorEnv, mongo, ids, first, peers, held: await held() };
}

/**
 * The orders an actor process holds now: entries pending at its consumer (named HOSTNAME-PID-...,
 * actors/placement/process.ts) on any partition, whose order's state is a lease. One command per key:
 * in a Redis Cluster the partitions' keys are on different slots.
 */
export async function ordersHeldBy(
  actor: ServiceProcess,
  redis: Redis | Cluster,
  keys: RedisKeys,
): Promise<string[]> {
  const consumer = new RegExp(`-${actor.process.pid}-[0-9a-f]{8}$`);
  const orderIds = (
    await Promise.all(
      keys.placementStreams.map(async (stream) => {
        const pending = (await redis.xpending(stream, keys.placementGroup, "-", "+", 10_000)) as [
          string,
          string,
          number,
          number,
        ][];
        const mine = pending.filter(([, name]) => consumer.test(name));
        const entries = await Promise.all(mine.map(([id]) => redis.xrange(stream, id, id)));
        return entries.flatMap((found) => {
          const fields = found[0]?.[1] ?? [];
          const at = fields.indexOf("order_id");
          return at >= 0 && fields[at + 1] ? [fields[at + 1]!] : [];
        });
      }),
    )
  ).flat();
  const partitions = keys.placementStreams.length;
  const states = await Promise.all(
    orderIds.map((id) => redis.get(keys.orderState(partitionOf(id, partitions), id))),
  );
  return orderIds.filter((_, i) => states[i]?.startsWith("lease:"));
}

export { Cleanup, spawnService } from "./system.ts";
export { configureVenue, type VenueStats, venueStats } from "./venue-admin.ts";

/**
 * The value of one sample in a process's /metrics; labels must all match (extra labels such as
 * process_kind are ignored). Missing sample -> null.
 */
export async function metricValue(
  process: ServiceProcess,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | null> {
  const text = await (await fetch(`${process.opsUrl}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = line.match(/^([A-Za-z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[4]);
  }
  return null;
}

export type OrdersCollection = ReturnType<typeof mongoFor>["orders"];

/** Order counts by status. */
export async function statusCounts(orders: OrdersCollection): Promise<Record<string, number>> {
  const rows = await orders.aggregate<{ _id: string; n: number }>([
    { $group: { _id: "$status", n: { $sum: 1 } } },
  ]);
  const counts: Record<string, number> = {};
  for (const row of await rows.toArray()) counts[row._id] = row.n;
  return counts;
}

export async function countPlaced(orders: OrdersCollection, ids?: readonly string[]): Promise<number> {
  return orders.countDocuments(ids ? { status: "placed", _id: { $in: [...ids] } } : { status: "placed" });
}

/**
 * Waits until `count` orders are placed (of `ids` when given, else of the whole collection); on
 * timeout the error also names the count of every status.
 */
export async function waitUntilPlaced(
  orders: OrdersCollection,
  count: number,
  options: { ids?: readonly string[]; timeoutMs: number; intervalMs?: number; message: string },
): Promise<void> {
  const { ids, ...polling } = options;
  await waitFor(async () => (await countPlaced(orders, ids)) === count, polling).catch(async (error) => {
    throw new Error(`${error.message}; statuses ${JSON.stringify(await statusCounts(orders))}`);
  });
}

/**
 * A connection for assertions and set-up on the test's Redis (commands fail fast while Redis is down,
 * and it reconnects by itself).
 */
export function redisFor(
  env: Env,
  cleanup: Cleanup,
): { redis: Redis | Cluster; keys: RedisKeys; stream: string } {
  const redis = testRedis(env, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  redis.on("error", () => {});
  cleanup.add(() => redis.disconnect());
  const keys = createRedisKeys(env.REDIS_KEY_PREFIX!, Number(env.PLACEMENT_PARTITIONS ?? 1));
  return { redis, keys, stream: keys.placementStreams[0]! };
}

/**
 * A client of the test's Redis: the cluster of REDIS_CLUSTER_NODES when the deployment runs on one (a
 * Cluster client, whose nodes reconnect and whose slot map follows a failover), else REDIS_URL.
 */
function testRedis(
  env: Env,
  options: { maxRetriesPerRequest: number; retryStrategy?: () => number },
): Redis | Cluster {
  if (!env.REDIS_CLUSTER_NODES) return new Redis(env.REDIS_URL!, { ...options, lazyConnect: false });
  return new Cluster(parseClusterNodes(env.REDIS_CLUSTER_NODES), {
    clusterRetryStrategy: options.retryStrategy ?? (() => 100),
    retryDelayOnFailover: 200,
    redisOptions: { maxRetriesPerRequest: options.maxRetriesPerRequest, commandTimeout: 5_000 },
  });
}

/**
 * Orders written the way the API writes them (MongoDB first, then the dispatch to Redis; the sweep time is
 * DISPATCH_GRACE_MS of `env` after now, as the API sets it), without HTTP: the benchmark and tests
 * that need a backlog before any actor runs. `dispatch: false` leaves them to the sweeper.
 */
export async function preloadOrders(
  env: Env,
  count: number,
  options: {
    dispatchGraceMs?: number;
    dispatch?: boolean;
    batch?: number;
    shape?: (record: OrderRecord, index: number) => Record<string, unknown>;
  } = {},
): Promise<string[]> {
  const { client, db } = mongoFor(env);
  const redis = testRedis(env, { maxRetriesPerRequest: 3 });
  redis.on("error", () => {});
  try {
    const repository = new MongoOrderRepository(db, { timeoutMs: 10_000 });
    await repository.ensureIndexes();
    const partitions = Number(env.PLACEMENT_PARTITIONS ?? 1);
    const keys = createRedisKeys(env.REDIS_KEY_PREFIX!, partitions);
    // Tracked as long as the API would with the test's settings (the sweeper's latest take-over time).
    const placement = new RedisPlacementState(redis, keys, Number(env.PLACEMENT_TRACK_TTL_MS ?? 900_000));
    const ids: string[] = [];
    const batch = options.batch ?? 200;
    for (let start = 0; start < count; start += batch) {
      const now = new Date();
      const records = Array.from({ length: Math.min(batch, count - start) }, (_, i) =>
        newOrderRecord(
          uuidV7(),
          {
            type: "market",
            side: (start + i) % 2 === 0 ? "buy" : "sell",
            instrument: "US0378331005",
            limitPriceCents: null,
            quantity: 1 + ((start + i) % 7),
          },
          now,
          {
            partitions,
            dispatchGraceMs: options.dispatchGraceMs ?? Number(env.DISPATCH_GRACE_MS ?? 600_000),
            idempotencyKey: null,
            account: "test",
          },
        ),
      );
      const documents = records.map((record, i) =>
        options.shape ? options.shape(record, start + i) : (record as unknown as Record<string, unknown>),
      );
      await db.collection("orders").insertMany(documents, { writeConcern: { w: "majority", journal: true } });
      if (options.dispatch !== false) {
        // The entry carries the order as stored (a shaped document included), as the API writes it.
        await Promise.all(
          documents.map((document) => placement.dispatch(document as unknown as DispatchedOrder, "intake")),
        );
      }
      ids.push(...records.map((record) => record._id));
    }
    return ids;
  } finally {
    redis.disconnect();
    await client.close();
  }
}

/** POSTs `count` orders with at most `concurrency` requests at once; returns every 201's order id. */
export async function submitOrders(
  target: { handle(request: Request): Promise<Response> } | string,
  count: number,
  concurrency = 20,
): Promise<{ ids: string[]; statuses: number[] }> {
  const ids: string[] = [];
  const statuses: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      const response = await postOrder(target, orderBody({ quantity: 1 + (index % 9) }));
      statuses.push(response.status);
      if (response.status === 201) ids.push(((await response.json()) as { id: string }).id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { ids, statuses };
}

/** Runs `bun src/main.ts <command> ...` as an operator would, with the deployment's environment. */
export async function runCommand(
  env: Env,
  command: string,
  args: string[],
): Promise<{ code: number; lines: string[]; stdout: string; stderr: string }> {
  const proc = Bun.spawn(["bun", `${ROOT}/src/main.ts`, command, ...args], {
    env: { ...process.env, ...env },
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr, lines: stdout.split("\n").filter((line) => line.trim() !== "") };
}

/** `orders dlq ...`; throws unless it exits 0. */
export async function runDlq(env: Env, args: string[]): Promise<{ code: number; lines: string[] }> {
  const { code, lines, stdout, stderr } = await runCommand(env, "dlq", args);
  if (code !== 0) throw new Error(`dlq ${args.join(" ")} exited ${code}: ${stderr}${stdout}`);
  return { code, lines };
}
