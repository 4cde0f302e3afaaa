/**
 * POST /orders while the order store stalls: 64 clients (no Idempotency-Key, the harder case: a 500
 * means "maybe stored" and the order has to be withdrawn) against the `api` process with default
 * settings; the MongoDB-wire server is paused (SIGSTOP) for --stall-s in the middle of the load. Run
 * twice, each on fresh servers: with load shedding (the default INTAKE_SHED_AFTER_MS) and without it
 * (INTAKE_SHED_AFTER_MS=0).
 *
 * Prints, per run, the answers to the requests sent during the stall by status, with their latency; the
 * orders withdrawn afterwards (one per 500: its order may have been stored); and how long after the
 * store came back the first request sent then got its 201.
 *
 *   bun run bench:store-stall [--stall-s 12] [--duration-s 20] [--concurrency 64] [--json PATH]
 */
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { mongoFor, ROOT } from "../test/support/system.ts";
import { waitFor } from "../test/support/wait-for.ts";
import { Cluster, metricSum } from "./chaos/cluster.ts";
import { clientAuthorizations, closedLoop, type Sample } from "./chaos/load.ts";
import { formatTable, type LatencySummary, ms, summarize, tally } from "./chaos/stats.ts";
import { exitUnlessPositive, runBenchmark, writeJsonReport } from "./output.ts";

const { values: args } = parseArgs({
  options: {
    "stall-s": { type: "string" },
    "duration-s": { type: "string" },
    "warmup-s": { type: "string" },
    concurrency: { type: "string" },
    json: { type: "string" },
  },
});
const stallS = Number(args["stall-s"] ?? 12);
const durationS = Number(args["duration-s"] ?? 20);
const warmupS = Number(args["warmup-s"] ?? 3);
const concurrency = Number(args.concurrency ?? 64);
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-store-stall.json");
exitUnlessPositive("bench:store-stall", [
  ["--stall-s", stallS],
  ["--duration-s", durationS - stallS],
  ["--warmup-s", warmupS],
  ["--concurrency", concurrency],
]);
/** The stall starts this far into the measured load. */
const STALL_AT_MS = 3_000;

const MODES = [
  { name: "load shedding (default)", env: {} },
  { name: "no shedding (INTAKE_SHED_AFTER_MS=0)", env: { INTAKE_SHED_AFTER_MS: "0" } },
] as const;

interface RunResult {
  mode: string;
  /** Answers to the requests sent while the store was paused, by status (0: no answer). */
  duringStall: Record<string, number>;
  latencyByStatus: Record<string, LatencySummary>;
  /** Orders withdrawn after the run: one per 500 (each named by its X-Order-Id, never placed). */
  withdrawn: number;
  /** From the resume to the answer of the first request sent after it that got a 201. */
  first201AfterResumeMs: number | null;
  requests: number;
  /** Whole run, every answer by status. */
  statuses: Record<string, number>;
}

async function runOnce(mode: (typeof MODES)[number]): Promise<RunResult> {
  const cluster = await Cluster.start({
    actors: 0,
    env: mode.env,
    venue: { failureRate: 0, latencyMs: 500 },
  });
  const mongo = mongoFor(cluster.env);
  try {
    const authorizations = await clientAuthorizations(cluster.env, concurrency, "bench-stall");
    const noKey = () => null;
    await closedLoop({
      baseUrl: cluster.api.baseUrl,
      concurrency,
      durationMs: warmupS * 1000,
      authorizations,
      key: noKey,
    });
    const withdrawnBefore = await mongo.orders.countDocuments({ status: "withdrawn" });
    let pausedAt = Number.NaN;
    let resumedAt = Number.NaN;
    const loadStarted = performance.now();
    const stall = (async () => {
      await Bun.sleep(STALL_AT_MS);
      pausedAt = performance.now() - loadStarted;
      cluster.servers.mongo.pause();
      await Bun.sleep(stallS * 1000);
      cluster.servers.mongo.resume();
      resumedAt = performance.now() - loadStarted;
    })();
    const samples = await closedLoop({
      baseUrl: cluster.api.baseUrl,
      concurrency,
      durationMs: durationS * 1000,
      authorizations,
      key: noKey,
    });
    await stall;
    const during = samples.filter((s) => s.startMs >= pausedAt && s.startMs < resumedAt);
    const duringStall: Record<string, number> = {};
    for (const sample of during) tally(duringStall, String(sample.status));
    const statuses: Record<string, number> = {};
    for (const sample of samples) tally(statuses, String(sample.status));
    const byStatus = new Map<number, Sample[]>();
    for (const sample of during) {
      const list = byStatus.get(sample.status);
      if (list) list.push(sample);
      else byStatus.set(sample.status, [sample]);
    }
    const latencyByStatus = Object.fromEntries(
      [...byStatus].map(([status, list]) => [String(status), summarize(list.map((s) => s.latencyMs))]),
    );
    const firstAfter = samples
      .filter((s) => s.startMs >= resumedAt && s.status === 201)
      .map((s) => s.startMs + s.latencyMs - resumedAt)
      .sort((a, b) => a - b)[0];
    // Every 500 without a key that named an order costs a withdrawal (a Redis fence and a MongoDB write,
    // retried until the store answers), which leaves a withdrawn order under the id the 500 named. (A 500
    // from a key look-up that failed named no order.)
    const answered500 = statuses["500"] ?? 0;
    await Bun.sleep(1_000);
    // An object, not the count: a run without a 500 withdraws 0 orders, which waitFor would take for "not yet".
    const { withdrawn } = await waitFor(
      async () =>
        (await metricSum(cluster.api, "orders_withdrawals_pending")) === 0
          ? { withdrawn: (await mongo.orders.countDocuments({ status: "withdrawn" })) - withdrawnBefore }
          : null,
      { timeoutMs: 120_000, intervalMs: 500, message: "the withdrawals of the 500s finished" },
    );
    console.log(
      `  ${mode.name}: during the ${stallS} s stall ${during.length} requests ${JSON.stringify(duringStall)}; ` +
        `500s in all ${answered500}, orders withdrawn ${withdrawn}`,
    );
    return {
      mode: mode.name,
      duringStall,
      latencyByStatus,
      withdrawn,
      first201AfterResumeMs: firstAfter === undefined ? null : Math.round(firstAfter),
      requests: samples.length,
      statuses,
    };
  } finally {
    await mongo.client.close();
    await cluster.stop();
  }
}

async function main(): Promise<undefined> {
  console.log(
    `store stall: ${concurrency} clients (no Idempotency-Key) for ${durationS} s, the store paused ${stallS} s from ${STALL_AT_MS / 1000} s on`,
  );
  const results: RunResult[] = [];
  for (const mode of MODES) results.push(await runOnce(mode));
  const rows: (string | number | null)[][] = [
    [
      "mode",
      "sent during the stall",
      "503 (ms p50 / p99 / max)",
      "500 (ms p50 / p99 / max)",
      "201",
      "withdrawn",
      "first 201 after resume",
    ],
    ...results.map((r) => {
      const latency = (status: string) => {
        const s = r.latencyByStatus[status];
        return s ? `${s.count} (${ms(s.p50)} / ${ms(s.p99)} / ${ms(s.max)})` : "0";
      };
      return [
        r.mode,
        Object.values(r.duringStall).reduce((a, b) => a + b, 0),
        latency("503"),
        latency("500"),
        r.duringStall["201"] ?? 0,
        r.withdrawn,
        r.first201AfterResumeMs === null ? null : `${r.first201AfterResumeMs} ms`,
      ];
    }),
  ];
  console.log(`\n${formatTable(rows)}`);
  writeJsonReport(jsonPath, {
    tool: "bench/store-stall.ts",
    command: `bun bench/store-stall.ts ${process.argv.slice(2).join(" ")}`.trim(),
    machine: {
      cpus: cpus().length,
      loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      bun: Bun.version,
    },
    config: { stallS, durationS, warmupS, concurrency, stallAtMs: STALL_AT_MS },
    results,
  });
  console.log(`json: ${jsonPath}`);
}

runBenchmark("store-stall", main);
