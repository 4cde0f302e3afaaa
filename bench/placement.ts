import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { entryFields } from "../src/adapters/placement-state.ts";
import { createRedisKeys } from "../src/adapters/redis-keys.ts";
import { loadConfig } from "../src/config.ts";
import type { DispatchedOrder } from "../src/domain/ports.ts";
import {
  Cleanup,
  configureVenue,
  type Env,
  preloadOrders,
  spawnActors,
  spawnVenue,
  venueStats,
} from "../test/support/placement.ts";
import type { OwnedProcess } from "../test/support/servers/child-process.ts";
import { isolatedEnv, mongoFor, ROOT, type Servers, startServers } from "../test/support/system.ts";
import { resetVenue } from "../test/support/venue-admin.ts";
import { waitFor } from "../test/support/wait-for.ts";
import { spawnMemoryActors } from "./memory-actors.ts";
import { writeJsonReport } from "./output.ts";

const LIMIT_TARGET = 0.9;
const SCALE_TARGET = 1.8;

const { values: args } = parseArgs({
  options: {
    store: { type: "string" },
    "in-flight": { type: "string" },
    "latency-ms": { type: "string" },
    failure: { type: "string" },
    processes: { type: "string" },
    "mongo-processes": { type: "string" },
    "duration-s": { type: "string" },
    "max-mongo-orders": { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
    assert: { type: "boolean", default: false },
  },
});

// ---------------------------------------------------------------------------------------------------
// The benchmark driver.

interface Run {
  store: "mongo" | "memory";
  processes: number;
  inFlight: number;
  latencyMs: number;
  failureRate: number;
  orders: number;
  limitPerSecond: number;
  steadyPerSecond: number;
  totalPerSecond: number;
  totalSeconds: number;
  ofLimit: number;
  venueSubmissions: number;
  venueFailures: number;
  venueDuplicates: number;
}

async function runBenchmark(): Promise<number> {
  const smoke = args.smoke === true;
  const stores = (args.store ?? "mongo,memory").split(",") as Run["store"][];
  // Default: the service's own ACTOR_CONCURRENCY (orders at the venue per process).
  const inFlight = Number(args["in-flight"] ?? (smoke ? 4 : loadConfig({}).ACTOR_CONCURRENCY));
  const latencyMs = Number(args["latency-ms"] ?? (smoke ? 100 : 500));
  const failureRate = Number(args.failure ?? 0.1);
  const processCounts = (args.processes ?? (smoke ? "1,2" : "1,2,3")).split(",").map(Number);
  const mongoProcessCounts = (args["mongo-processes"] ?? (smoke ? "1,2" : "1,2,3")).split(",").map(Number);
  const durationS = Number(args["duration-s"] ?? (smoke ? 2 : 12));
  // Unbounded by default: the store gets the same backlog (limit x duration) as the in-memory one.
  const maxMongoOrders = Number(args["max-mongo-orders"] ?? (smoke ? 20 : Number.POSITIVE_INFINITY));
  const jsonPath = resolve(ROOT, args.json ?? "reports/bench-placement.json");
  for (const store of stores) {
    if (store !== "mongo" && store !== "memory") throw new Error(`--store: unknown store ${store}`);
  }

  const cleanup = new Cleanup();
  const runs: Run[] = [];
  try {
    const servers = await startServers();
    cleanup.add(() => servers.stop());
    const venue = await spawnVenue(isolatedEnv(servers), { failureRate, latencyMs }, cleanup);
    console.log(
      `placement benchmark: ${cpus().length} CPUs, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}; MongoDB-wire server: ${servers.mongo.kind}; venue latency ${latencyMs} ms, ` +
        `failure ${failureRate}, ${inFlight} in flight per process`,
    );
    for (const store of stores) {
      for (const processes of store === "mongo" ? mongoProcessCounts : processCounts) {
        const limit = (processes * inFlight * 1000 * (1 - failureRate)) / latencyMs;
        let orders = Math.max(20, Math.round(limit * durationS));
        if (store === "mongo") orders = Math.min(orders, maxMongoOrders);
        await resetVenue(venue);
        await configureVenue(venue, { failure_rate: failureRate, latency_ms: latencyMs, outage: false });
        const run = await measure(servers, venue.baseUrl, { store, processes, inFlight, orders, cleanup });
        const stats = await venueStats(venue);
        const result: Run = {
          store,
          processes,
          inFlight,
          latencyMs,
          failureRate,
          orders,
          limitPerSecond: limit,
          steadyPerSecond: run.steadyPerSecond,
          totalPerSecond: orders / run.totalSeconds,
          totalSeconds: run.totalSeconds,
          ofLimit: run.steadyPerSecond / limit,
          venueSubmissions: stats.submissions,
          venueFailures: stats.failures,
          venueDuplicates: stats.duplicates,
        };
        runs.push(result);
        console.log(
          `  ${store} x${processes}: ${orders} orders, steady ${result.steadyPerSecond.toFixed(1)}/s ` +
            `(${(result.ofLimit * 100).toFixed(0)}% of ${limit.toFixed(1)}/s), total ${result.totalSeconds.toFixed(1)} s`,
        );
      }
    }
  } finally {
    await cleanup.run();
  }

  const rows: string[][] = [
    [
      "store",
      "procs",
      "in-flight",
      "orders",
      "limit/s",
      "steady/s",
      "of limit",
      "total/s",
      "total s",
      "vs 1 proc",
      "venue fail",
      "dups",
    ],
  ];
  const misses: string[] = [];
  for (const run of runs) {
    const single = runs.find((r) => r.store === run.store && r.processes === 1);
    const scale = single ? run.steadyPerSecond / single.steadyPerSecond : Number.NaN;
    rows.push([
      run.store,
      String(run.processes),
      String(run.inFlight),
      String(run.orders),
      run.limitPerSecond.toFixed(1),
      run.steadyPerSecond.toFixed(1),
      `${run.ofLimit.toFixed(2)}x`,
      run.totalPerSecond.toFixed(1),
      run.totalSeconds.toFixed(1),
      Number.isNaN(scale) ? "-" : `${scale.toFixed(2)}x`,
      String(run.venueFailures),
      String(run.venueDuplicates),
    ]);
    if (run.ofLimit < LIMIT_TARGET)
      misses.push(`${run.store} x${run.processes}: ${run.ofLimit.toFixed(2)}x of limit`);
    if (run.processes === 2 && scale < SCALE_TARGET)
      misses.push(`${run.store} x2: ${scale.toFixed(2)}x of one`);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  console.log("");
  for (const row of rows) {
    console.log(
      row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "),
    );
  }
  console.log(
    `\ntargets: steady >= ${LIMIT_TARGET}x limit (limit = processes x in-flight / latency x (1 - failure)); ` +
      `2 processes >= ${SCALE_TARGET}x one`,
  );
  console.log(misses.length === 0 ? "all targets met" : `missed: ${misses.join("; ")}`);
  writeJsonReport(jsonPath, {
    benchmark: "placement",
    at: new Date().toISOString(),
    smoke: args.smoke === true,
    cpus: cpus().length,
    loadavg: loadavg(),
    targets: { ofLimit: LIMIT_TARGET, twoProcessesVsOne: SCALE_TARGET },
    runs,
    misses,
  });
  console.log(`wrote ${jsonPath}`);
  return args.assert && misses.length > 0 ? 1 : 0;
}

async function measure(
  servers: Servers,
  venueUrl: string,
  options: { store: Run["store"]; processes: number; inFlight: number; orders: number; cleanup: Cleanup },
): Promise<{ steadyPerSecond: number; totalSeconds: number }> {
  // Every other setting is the default (timeouts included): the backlog is preloaded and dispatched as
  // the API would, each order due for the sweeper 30 s after it was stored.
  const env: Env = isolatedEnv(servers, {
    LOG_LEVEL: "error",
    EXCHANGE_URL: venueUrl,
    ACTOR_CONCURRENCY: String(options.inFlight),
  });
  const local = new Cleanup();
  try {
    const actors: { process: OwnedProcess }[] = [];
    for (let i = 0; i < options.processes; i++) {
      actors.push(
        options.store === "mongo" ? await spawnActors(env, local) : await spawnMemoryActors(env, local),
      );
    }
    const mongo = mongoFor(env);
    local.add(() => mongo.client.close());
    const placed =
      options.store === "mongo"
        ? () => mongo.orders.countDocuments({ status: "placed" })
        : async () => (await venueStats({ baseUrl: venueUrl })).orders;

    const started = performance.now();
    const samples: [number, number][] = [];
    const loading =
      options.store === "mongo"
        ? preloadOrders(env, options.orders, { dispatchGraceMs: 30_000 })
        : xaddOnly(env, options.orders);
    await loading;
    await waitFor(
      async () => {
        const count = await placed();
        samples.push([performance.now() - started, count]);
        return count >= options.orders;
      },
      {
        timeoutMs: Math.max(120_000, options.orders * 500),
        intervalMs: options.store === "mongo" ? 500 : 100,
        message: `${options.orders} orders placed`,
      },
    );
    const totalSeconds = (performance.now() - started) / 1000;
    return { steadyPerSecond: steadyRate(samples, options.orders), totalSeconds };
  } finally {
    await local.run();
  }
}

/** Orders per second between the samples where 10% and 90% of the orders were placed. */
function steadyRate(samples: [number, number][], orders: number): number {
  const from = samples.find(([, count]) => count >= orders * 0.1) ?? samples[0]!;
  const to = samples.find(([, count]) => count >= orders * 0.9) ?? samples[samples.length - 1]!;
  if (to[0] <= from[0]) return orders / (samples[samples.length - 1]![0] / 1000);
  return (to[1] - from[1]) / ((to[0] - from[0]) / 1000);
}

const sampleOrder: DispatchedOrder = {
  _id: "",
  partition: 0,
  type: "market",
  side: "buy",
  instrument: "US0378331005",
  limit_price_cents: null,
  quantity: 1,
};

/** Entries as the API writes them (the order on the entry), without MongoDB: the in-memory store's load. */
async function xaddOnly(env: Env, count: number): Promise<void> {
  const redis = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: 3 });
  try {
    const keys = createRedisKeys(env.REDIS_KEY_PREFIX!, 1);
    for (let start = 0; start < count; start += 500) {
      const pipeline = redis.pipeline();
      for (let i = start; i < Math.min(count, start + 500); i++) {
        const order = { ...sampleOrder, _id: Bun.randomUUIDv7() };
        pipeline.xadd(keys.placementStream(0), "*", ...entryFields(order, "intake", 1));
      }
      await pipeline.exec();
    }
  } finally {
    redis.disconnect();
  }
}

// Last: the module-level constants above (sampleOrder) must be initialised before the run uses them.
process.exit(await runBenchmark());
