/**
 * `bun run bench:executions`: execution reports ingested (venue feed -> gateway -> Redis) and applied
 * (execution actors -> MongoDB) during a burst, against a floor measured in the same run: raw XADDs of
 * the same frames to the same Redis, pipelined. Real processes at default settings (one gateway, one
 * execution actor process unless --executions says more) on the harness's embedded store.
 *
 * Prints: the floor, reports/s appended by the gateway and applied by the actors, the time to drain,
 * and the apply lag (venue transact time -> durable in MongoDB) p50/p99/max, read from every stored
 * execution. Options: --reports 100000 --rate 20000 --orders 200 --executions 1 --smoke --json FILE.
 */
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { uuidV7 } from "../src/domain/ids.ts";
import { preloadPlacedOrders } from "../test/support/executions.ts";
import { metricValue, spawnService, spawnVenue } from "../test/support/placement.ts";
import { Cleanup, isolatedEnv, mongoFor, type ServiceProcess, startServers } from "../test/support/system.ts";
import { burstFeed, configureFeed, configureVenue } from "../test/support/venue-admin.ts";
import { waitFor } from "../test/support/wait-for.ts";
import { runBenchmark, writeJsonReport } from "./output.ts";

const { values: args } = parseArgs({
  options: {
    reports: { type: "string" },
    rate: { type: "string" },
    orders: { type: "string" },
    executions: { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const smoke = args.smoke as boolean;
const REPORTS = Number(args.reports ?? (smoke ? 5_000 : 100_000));
const RATE = Number(args.rate ?? 20_000);
const ORDERS = Number(args.orders ?? (smoke ? 50 : 200));
const EXECUTION_PROCESSES = Number(args.executions ?? 1);
const QUANTITY = Math.ceil(REPORTS / ORDERS);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Raw XADDs of venue-shaped frames, pipelined 1,000 at a time: what Redis alone takes. */
async function floor(redis: Redis, stream: string, count: number): Promise<number> {
  const frame = (seq: number) =>
    JSON.stringify({
      type: "execution",
      exec_id: `floor-${seq}`,
      session: "floor",
      seq,
      client_order_id: uuidV7(),
      venue_order_id: crypto.randomUUID(),
      exec_type: "trade",
      last_qty: 1,
      last_price_cents: 12_345,
      cum_qty: seq,
      leaves_qty: 0,
      transact_time: new Date().toISOString(),
    });
  const started = performance.now();
  for (let i = 0; i < count; i += 1_000) {
    const pipeline = redis.pipeline();
    for (let k = i; k < Math.min(count, i + 1_000); k++) pipeline.xadd(stream, "*", "report", frame(k + 1));
    await pipeline.exec();
  }
  const seconds = (performance.now() - started) / 1000;
  await redis.del(stream);
  return count / seconds;
}

async function main(): Promise<number> {
  const cleanup = new Cleanup();
  const servers = await startServers();
  cleanup.add(() => servers.stop());
  try {
    const base = isolatedEnv(servers, { LOG_LEVEL: "warn", EXCHANGE_FILLS_PER_ORDER: "0" });
    const venue = await spawnVenue(base, { failureRate: 0, latencyMs: 0 }, cleanup);
    const env: Record<string, string> = { ...base, EXCHANGE_URL: venue.baseUrl };
    await configureVenue(venue, { latency_ms: 0, failure_rate: 0 });
    await configureFeed(venue, { fills_per_order: 0 });

    await preloadPlacedOrders(env, venue, ORDERS, QUANTITY);
    const { client, db } = mongoFor(env);
    cleanup.add(() => client.close());

    const redis = new Redis(env.REDIS_URL as string);
    cleanup.add(() => redis.disconnect());
    const floorPerSecond = await floor(redis, `${env.REDIS_KEY_PREFIX}:floor`, REPORTS);

    const spawn = async (kind: "gateway" | "executions", name: string): Promise<ServiceProcess> => {
      const service = await spawnService(kind, env, { name });
      cleanup.add(() => service.process.kill());
      return service;
    };
    const gateway = await spawn("gateway", "gateway");
    const executions = await Promise.all(
      Array.from({ length: EXECUTION_PROCESSES }, (_, i) => spawn("executions", `executions-${i}`)),
    );
    await waitFor(async () => (await metricValue(gateway, "executions_gateway_active")) === 1, {
      timeoutMs: 15_000,
      message: "the gateway to be active",
    });
    const appliedNow = async () => {
      const counts = await Promise.all(
        executions.map((e) => metricValue(e, "executions_reports_applied_total", { outcome: "applied" })),
      );
      return counts.reduce((sum: number, n) => sum + (n ?? 0), 0);
    };

    const started = performance.now();
    const scheduled = await burstFeed(venue, { reports: REPORTS, per_second: RATE });
    let appendedAt = 0;
    let appliedAt = 0;
    await waitFor(
      async () => {
        const elapsed = (performance.now() - started) / 1000;
        if (appendedAt === 0 && ((await metricValue(gateway, "executions_last_sequence")) ?? 0) >= scheduled)
          appendedAt = elapsed;
        if (executions.length === 0 || (await appliedNow()) >= scheduled) appliedAt = elapsed;
        return appendedAt > 0 && appliedAt > 0;
      },
      { timeoutMs: 900_000, intervalMs: 100, message: "every report to be applied" },
    );
    const stored = await db
      .collection<{ executed_at: Date; applied_at: Date; order_id: string }>("executions")
      .find({}, { projection: { executed_at: 1, applied_at: 1 } })
      .toArray();
    const lags = stored.map((e) => e.applied_at.getTime() - e.executed_at.getTime()).sort((a, b) => a - b);
    const offered = scheduled / (scheduled / RATE);
    const result = {
      reports: scheduled,
      orders: ORDERS,
      execution_processes: EXECUTION_PROCESSES,
      offered_per_second: Math.round(offered),
      floor_xadd_per_second: Math.round(floorPerSecond),
      appended_per_second: Math.round(scheduled / appendedAt),
      appended_of_floor: Number((scheduled / appendedAt / floorPerSecond).toFixed(3)),
      applied_per_second: Math.round(scheduled / appliedAt),
      applied_of_floor: Number((scheduled / appliedAt / floorPerSecond).toFixed(3)),
      drained_after_s: Number(appliedAt.toFixed(1)),
      stored_executions: stored.length,
      apply_lag_ms: {
        p50: percentile(lags, 50),
        p99: percentile(lags, 99),
        max: lags.at(-1) ?? 0,
      },
    };
    console.log("bench:executions (burst over the venue feed; real processes, embedded store)");
    const applying = executions.length > 0;
    const notApplied = "not measured (--executions 0)";
    console.table({
      "raw XADD floor": `${result.floor_xadd_per_second} reports/s`,
      offered: `${result.offered_per_second} reports/s (${scheduled} reports over ${ORDERS} orders)`,
      "appended by the gateway": `${result.appended_per_second} reports/s (${result.appended_of_floor}x floor)`,
      "applied by the actors": applying
        ? `${result.applied_per_second} reports/s (${result.applied_of_floor}x floor)`
        : notApplied,
      "all applied after": applying ? `${result.drained_after_s} s` : notApplied,
      "apply lag p50 / p99 / max": applying
        ? `${result.apply_lag_ms.p50} / ${result.apply_lag_ms.p99} / ${result.apply_lag_ms.max} ms`
        : notApplied,
      "stored executions": applying
        ? `${result.stored_executions} (each report once: ${result.stored_executions === scheduled})`
        : notApplied,
    });
    if (args.json) writeJsonReport(args.json, result);
    return executions.length === 0 || result.stored_executions === scheduled ? 0 : 1;
  } finally {
    await cleanup.run();
  }
}

runBenchmark("bench:executions", main);
