/**
 * The I/O side of the chaos check: waits for the backlog to drain, then reads MongoDB, the venue (its
 * counters and one lookup per order) and Redis, and hands what it read to the pure `analyze`
 * (bench/chaos/analysis.ts, where the rules are). Every read is bounded: a server the run just killed
 * must fail the check, not hang it.
 */
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import { createMongoClient } from "../../src/adapters/mongo/client.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import { databaseName } from "../../src/config.ts";
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

/** Reads MongoDB, the venue (stats and one lookup per order) and the dead-letter stream. */
async function collect(env: Record<string, string>, venue: Service): Promise<Collected> {
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
    const keys = createRedisKeys(env.REDIS_KEY_PREFIX as string, Number(env.PLACEMENT_PARTITIONS ?? 1));
    const deadLetters = await redis.xlen(keys.deadLetterStream).catch(() => -1);
    let streamPending: number | null = 0;
    for (const stream of keys.placementStreams) {
      const summary = (await redis.xpending(stream, keys.placementGroup).catch(() => null)) as
        | [number]
        | null;
      streamPending = summary && streamPending !== null ? streamPending + Number(summary[0]) : null;
    }
    return { orders, venue: stats, venueRecords, deadLetters, streamPending };
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
  options: AnalyzeOptions,
): Promise<Analysis> {
  return analyze(results, await collect(env, venue), options);
}
