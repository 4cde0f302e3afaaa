/**
 * The I/O side of the chaos check: waits for the backlog to drain and the execution path to catch up,
 * then reads MongoDB, the venue (its counters, its fills and one lookup per order) and Redis, and hands
 * what it read to the pure `analyze`
 * (bench/chaos/analysis.ts, where the rules are). Every read is bounded: a server the run just killed
 * must fail the check, not hang it.
 */
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import { createMongoClient } from "../../src/adapters/mongo/client.ts";
import { createRedisKeys, type RedisKeys } from "../../src/adapters/redis-keys.ts";
import { databaseName, loadConfig } from "../../src/config.ts";
import { executionBacklog } from "../../test/support/executions.ts";
import { venueFills } from "../../test/support/venue-admin.ts";
import {
  type Analysis,
  type AnalyzeOptions,
  analyze,
  type Collected,
  drainPoll,
  formatCounts,
  type StoredOrder,
} from "./analysis.ts";
import type { OpResult } from "./client.ts";
import { type Service, venueStats } from "./cluster.ts";
import {
  type CollectedFills,
  checkFills,
  type ExecutionsWait,
  readAppliedFills,
  readFillEvidence,
} from "./fills.ts";

export interface DrainResult {
  drained: boolean;
  ms: number;
  counts: Record<string, number>;
}

async function statusCounts(client: MongoClient, database: string): Promise<Record<string, number>> {
  const rows = await client
    .db(database)
    .collection("orders")
    // The deadline: a read on a connection that a MongoDB kill reset can otherwise wait forever under Bun.
    .aggregate<{ _id: string; n: number }>([{ $group: { _id: "$status", n: { $sum: 1 } } }], {
      signal: AbortSignal.timeout(30_000),
    })
    .toArray();
  const counts: Record<string, number> = {};
  for (const row of rows) counts[row._id] = row.n;
  return counts;
}

/** Order counts by status, or null when MongoDB does not answer (for progress lines). */
export function createStatusProbe(mongoUrl: string) {
  // FerretDB groups in its own process after reading every document: 2.2 s at 8,600 orders on
  // PostgreSQL under load, so a probe with a 3 s socket timeout went blind for the last minutes of a
  // 10,000-order run. The service's own client adds the stuck-monitor restart and operation deadlines.
  const client = createMongoClient(mongoUrl, { timeoutMs: 10_000, maxPoolSize: 8 });
  const database = databaseName(mongoUrl);
  return {
    counts: () => statusCounts(client, database).catch(() => null),
    close: () => client.close(),
  };
}

/** Polls the order counts every second until `drainPoll` says every order MongoDB knows is final. */
export async function drain(
  mongoUrl: string,
  timeoutMs: number,
  log: (line: string) => void,
  progressEveryMs = 5_000,
): Promise<DrainResult> {
  const probe = createStatusProbe(mongoUrl);
  const started = Date.now();
  let lastLog = 0;
  let previousTotal = -1;
  let counts: Record<string, number> = {};
  try {
    for (;;) {
      const read = await probe.counts();
      if (read) {
        counts = read;
        const poll = drainPoll(counts, previousTotal);
        if (poll.drained) return { drained: true, ms: Date.now() - started, counts };
        previousTotal = poll.settledTotal;
      }
      if (Date.now() - started > timeoutMs) return { drained: false, ms: Date.now() - started, counts };
      if (Date.now() - lastLog >= progressEveryMs) {
        lastLog = Date.now();
        log(`draining ${((Date.now() - started) / 1000).toFixed(0)} s: ${formatCounts(read)}`);
      }
      await Bun.sleep(1_000);
    }
  } finally {
    await probe.close();
  }
}

/** The deployment's Redis keys, with the partition counts its processes read from the same env. */
function keysOf(env: Record<string, string>): RedisKeys {
  const config = loadConfig(env);
  return createRedisKeys(config.REDIS_KEY_PREFIX, config.PLACEMENT_PARTITIONS, config.EXECUTION_PARTITIONS);
}

/**
 * Waits, polling once a second, until the execution path caught up with the venue: no order the venue
 * holds has open shares, the executions streams hold nothing unread or unacknowledged, and MongoDB holds
 * as many executions as the venue sent reports. The venue is asked first, MongoDB (a count) last.
 */
export async function awaitExecutions(
  env: Record<string, string>,
  venue: Service,
  timeoutMs: number,
  log: (line: string) => void,
  progressEveryMs = 5_000,
): Promise<ExecutionsWait> {
  const client = createMongoClient(env.MONGO_URL as string, { timeoutMs: 10_000, maxPoolSize: 2 });
  const executions = client.db(databaseName(env.MONGO_URL as string)).collection("executions");
  const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 1, commandTimeout: 5_000 });
  redis.on("error", () => {});
  const keys = keysOf(env);
  const started = Date.now();
  let lastLog = started;
  const wait: ExecutionsWait = {
    caughtUp: false,
    ms: 0,
    openLeaves: -1,
    backlog: null,
    reportsSent: 0,
    reportsStored: null,
    deadLettered: null,
  };
  try {
    for (;;) {
      const fills = await venueFills(venue).catch(() => null);
      if (fills) {
        wait.reportsSent = fills.last_seq;
        wait.openLeaves = Object.values(fills.orders).filter((o) => o.leaves_qty > 0).length;
        wait.backlog = wait.openLeaves > 0 ? null : await executionBacklog(redis, keys).catch(() => null);
        // A backlog Redis cannot measure (null lag after trimming) is settled by the count alone.
        wait.reportsStored =
          wait.openLeaves > 0 || (wait.backlog !== null && wait.backlog > 0)
            ? null
            : await executions.countDocuments({}, { signal: AbortSignal.timeout(10_000) }).catch(() => null);
        wait.caughtUp = wait.reportsStored === wait.reportsSent;
        // A dead-lettered report is acknowledged and never applied: the count says where a shortfall went.
        wait.deadLettered = await redis.xlen(keys.executionDeadLetterStream).catch(() => null);
      }
      wait.ms = Date.now() - started;
      if (wait.caughtUp || wait.ms > timeoutMs) return wait;
      if (Date.now() - lastLog >= progressEveryMs) {
        lastLog = Date.now();
        log(
          `executions ${(wait.ms / 1000).toFixed(0)} s: ${wait.openLeaves} orders open at the venue, backlog ${wait.backlog ?? "?"}, ${wait.reportsStored ?? "?"} of ${wait.reportsSent} reports stored, ${wait.deadLettered ?? "?"} dead-lettered`,
        );
      }
      await Bun.sleep(1_000);
    }
  } finally {
    redis.disconnect();
    await client.close();
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= items.length) return;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

async function venueLookup(venue: Service, id: string): Promise<string | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      const response = await fetch(`${venue.baseUrl}/orders/${encodeURIComponent(id)}`, {
        signal: AbortSignal.timeout(5_000),
      });
      if (response.status === 404) return null;
      if (response.status === 200)
        return ((await response.json()) as { venue_order_id: string }).venue_order_id;
      throw new Error(`venue lookup answered ${response.status}`);
    } catch (error) {
      if (attempt >= 5) throw error;
      await Bun.sleep(200 * attempt);
    }
  }
}

/** Exactly the fields of `StoredOrder`: the type-check fails when one is added to only one of the two. */
const STORED_ORDER_PROJECTION = {
  _id: 1,
  status: 1,
  quantity: 1,
  idempotency_key: 1,
  venue_order_id: 1,
  attempts: 1,
  redispatches: 1,
  parked_at: 1,
  rejection_reason: 1,
} as const satisfies Record<keyof StoredOrder, 1>;

/** Reads MongoDB, the venue (stats, fills and one lookup per order) and the dead-letter stream. */
async function collect(
  env: Record<string, string>,
  venue: Service,
  executions: ExecutionsWait,
): Promise<Collected> {
  const client = new MongoClient(env.MONGO_URL as string, {
    serverSelectionTimeoutMS: 10_000,
    maxPoolSize: 8,
  });
  const redis = new Redis(env.REDIS_URL as string, { maxRetriesPerRequest: 3, lazyConnect: false });
  redis.on("error", () => {});
  try {
    const orders = await client
      .db(databaseName(env.MONGO_URL as string))
      .collection<StoredOrder>("orders")
      .find({}, { projection: STORED_ORDER_PROJECTION })
      .toArray();
    const stats = await venueStats(venue);
    const records = await mapLimit(orders, 32, (order) => venueLookup(venue, order._id));
    const venueRecords = new Map(orders.map((order, i) => [order._id, records[i] ?? null]));
    const keys = keysOf(env);
    const deadLetters = await redis.xlen(keys.deadLetterStream).catch(() => -1);
    let streamPending: number | null = 0;
    for (const stream of keys.placementStreams) {
      const summary = (await redis.xpending(stream, keys.placementGroup).catch(() => null)) as
        | [number]
        | null;
      streamPending = summary && streamPending !== null ? streamPending + Number(summary[0]) : null;
    }
    const db = client.db(databaseName(env.MONGO_URL as string));
    const fills: CollectedFills = {
      venue: (await venueFills(venue)).orders,
      applied: await readAppliedFills(db),
      wait: executions,
    };
    // The run's data dies with it: what the report keeps of a disagreeing order is all there will be.
    const suspects = new Set(Object.values(checkFills(fills).checks.firstIds).flat());
    if (suspects.size > 0) fills.evidence = await readFillEvidence(db, [...suspects]);
    return { orders, venue: stats, venueRecords, deadLetters, streamPending, fills };
  } finally {
    redis.disconnect();
    await client.close();
  }
}

/**
 * The total-queue check once the backlog drained: reads what the system holds (`env` names its MongoDB,
 * Redis and key prefix) and checks the client log `results` against it.
 */
export async function check(
  results: readonly OpResult[],
  env: Record<string, string>,
  venue: Service,
  executions: ExecutionsWait,
  options: AnalyzeOptions,
): Promise<Analysis> {
  return analyze(results, await collect(env, venue, executions), options);
}
