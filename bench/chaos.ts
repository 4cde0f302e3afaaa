/**
 * The chaos checker: the whole system from its real processes (harness redis-server and MongoDB-wire
 * server, the venue, one api, K actor processes, the execution path: two gateways and one executions
 * process), N orders over HTTP from seeded clients, a random fault every few seconds, then a drain, a
 * wait for the execution reports, and a total-queue check against MongoDB and the venue.
 *
 *   bun bench/chaos.ts [--orders N] [--duration-s S] [--seed X] [--actors K] [--concurrency C]
 *                      [--report reports/chaos.json] [--drain-timeout-s 180] [--fills-timeout-s 120]
 *                      [--faults kind,kind|none] [--env NAME=VALUE ...] [--smoke]
 *
 * --env overrides one of the service settings below (TIMINGS) for every process of the run.
 *
 * Exit code: 0 no violation, 1 a violation (lost, not placed, placed twice, wrong replay, applied
 * fills not the venue's, ...),
 * 2 the run itself failed (a process did not start). Process logs go next to the report
 * (<report>-logs/). See bench/chaos/analysis.ts for the rules.
 */
import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../test/support/system.ts";
import { formatCounts } from "./chaos/analysis.ts";
import { awaitExecutions, check, createStatusProbe, drain } from "./chaos/checker.ts";
import { createPlan, LoadClient } from "./chaos/client.ts";
import { Cluster } from "./chaos/cluster.ts";
import { FAULT_KINDS, type FaultContext, type FaultKind, runFaults } from "./chaos/faults.ts";
import { createRng } from "./chaos/prng.ts";
import {
  type ChaosReport,
  faultSummary,
  latencyReport,
  requestSummary,
  summaryText,
} from "./chaos/report.ts";
import { runBenchmark, writeJsonReport } from "./output.ts";

const { values: args } = parseArgs({
  options: {
    orders: { type: "string" },
    "duration-s": { type: "string" },
    seed: { type: "string" },
    actors: { type: "string" },
    concurrency: { type: "string" },
    report: { type: "string" },
    "drain-timeout-s": { type: "string" },
    "fills-timeout-s": { type: "string" },
    faults: { type: "string" },
    env: { type: "string", multiple: true },
    smoke: { type: "boolean", default: false },
  },
});
const smoke = args.smoke === true;
const orders = Number(args.orders ?? (smoke ? 60 : 2_000));
const durationS = Number(args["duration-s"] ?? (smoke ? 15 : 60));
const actorCount = Number(args.actors ?? (smoke ? 2 : 3));
const concurrency = Number(args.concurrency ?? 16);
const drainTimeoutS = Number(args["drain-timeout-s"] ?? 180);
const fillsTimeoutS = Number(args["fills-timeout-s"] ?? 120);
const seed = args.seed ?? String(Date.now() % 1_000_000);
const reportPath = resolve(ROOT, args.report ?? "reports/chaos.json");
const kinds: FaultKind[] =
  args.faults === "none"
    ? []
    : args.faults
      ? args.faults.split(",").map((k) => {
          if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new Error(`unknown fault kind ${k}`);
          return k as FaultKind;
        })
      : [...FAULT_KINDS];
for (const [name, value, min] of [
  ["--orders", orders, 1],
  ["--duration-s", durationS, 1],
  ["--actors", actorCount, 1],
  ["--concurrency", concurrency, 1],
  ["--drain-timeout-s", drainTimeoutS, 1],
  ["--fills-timeout-s", fillsTimeoutS, 1],
] as const) {
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}`);
}

/**
 * Settings of the system under test: short timings, so that faults are recovered from within seconds.
 * Everything else, the actors' concurrency included (ACTOR_CONCURRENCY 256 orders at the venue per
 * process), is the default: the bursts after a fault (a reclaim, a sweep, a breaker closing on a backlog)
 * reach the store and the venue as wide as they would in a deployment.
 */
const TIMINGS: Record<string, number> = {
  CLAIM_TIMEOUT_MS: 3_000,
  BREAKER_TIMEOUT_MS: 1_000,
  BREAKER_RESET_TIMEOUT_MS: 2_000,
  RECLAIM_INTERVAL_MS: 500,
  SWEEP_INTERVAL_MS: 1_000,
  DISPATCH_GRACE_MS: 2_000,
  RETRY_BASE_DELAY_MS: 100,
  RETRY_MAX_DELAY_MS: 2_000,
  REQUEST_DEADLINE_MS: 3_000,
  MONGO_TIMEOUT_MS: 1_000,
  SHUTDOWN_DEADLINE_MS: 2_000,
  STREAM_METRICS_INTERVAL_MS: 1_000,
  TRIM_INTERVAL_MS: 5_000,
  // A killed active gateway is replaced within seconds, and one that lost Redis is back within one.
  GATEWAY_LEASE_MS: 2_000,
  GATEWAY_RECONNECT_MAX_MS: 1_000,
};
for (const pair of args.env ?? []) {
  const match = pair.match(/^([A-Z_]+)=(\d+)$/);
  if (!match) throw new Error(`--env expects NAME=<integer>, got ${pair}`);
  TIMINGS[match[1] as string] = Number(match[2]);
}
const VENUE = { failureRate: 0.1, latencyMs: 50 };
const REQUEST_DEADLINE_MS = TIMINGS.REQUEST_DEADLINE_MS as number;
const CLIENT_TIMEOUT_MS = REQUEST_DEADLINE_MS + 2_000;
const MAX_ATTEMPTS = 12;

const started = Date.now();
let t0 = performance.now();
const clock = () => performance.now() - t0;
const log = (line: string) => {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[chaos ${t}s] ${line}\n`);
};

async function main(): Promise<number> {
  const rng = createRng(seed);
  log(
    `seed ${seed}: ${orders} orders over ${durationS} s of faults (${kinds.join(", ") || "none"}), ${actorCount} actor processes, ${concurrency} client workers`,
  );
  let cluster: Cluster;
  try {
    cluster = await Cluster.start({
      actors: actorCount,
      executionPath: true,
      venue: VENUE,
      env: Object.fromEntries(Object.entries(TIMINGS).map(([k, v]) => [k, String(v)])),
    });
  } catch (error) {
    log(`could not start the system: ${(error as Error).message}`);
    return 2;
  }
  const stopOnSignal = () => {
    log("interrupted; stopping every process");
    void cluster.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", stopOnSignal);
  process.once("SIGTERM", stopOnSignal);
  const mongoKind = cluster.servers.mongo.kind;
  const faultKinds = cluster.servers.mongo.faultable
    ? kinds
    : kinds.filter((k) => k !== "mongo-restart" && k !== "mongo-stall");
  log(
    `up: ${mongoKind} ${cluster.servers.mongo.url}, redis ${cluster.servers.redis.url}, api ${cluster.api.baseUrl}, venue ${cluster.venue.baseUrl}`,
  );

  try {
    const durationMs = durationS * 1000;
    const plan = createPlan(rng.fork("plan"), orders, durationMs * 0.95);
    const client = new LoadClient({
      baseUrl: cluster.api.baseUrl,
      concurrency,
      timeoutMs: CLIENT_TIMEOUT_MS,
      maxAttempts: MAX_ATTEMPTS,
      clock,
      rng: rng.fork("client"),
    });
    const ctx: FaultContext = {
      cluster,
      rng: rng.fork("faults"),
      clock,
      log,
      claimTimeoutMs: TIMINGS.CLAIM_TIMEOUT_MS as number,
      inFlight: () => client.inFlight,
      active: null,
    };
    const probe = createStatusProbe(cluster.env.MONGO_URL as string);
    let probing = false;
    const ticker = setInterval(
      () => {
        if (probing) return;
        probing = true;
        void probe
          .counts()
          .then((counts) => {
            const c = client.counters;
            const statuses = Object.entries(c.byStatus)
              .sort()
              .map(([k, v]) => `${k}:${v}`)
              .join(" ");
            log(
              `ops ${c.done}/${orders} attempts ${c.attempts} [${statuses}] in flight ${client.inFlight} | ${formatCounts(counts)} | fault ${ctx.active ?? "-"}`,
            );
          })
          .finally(() => {
            probing = false;
          });
      },
      smoke ? 2_000 : 5_000,
    );

    t0 = performance.now();
    const loadStarted = Date.now();
    let loadDone = false;
    const load = client.run(plan).then((results) => {
      loadDone = true;
      log(`all ${results.length} operations answered or given up`);
      return results;
    });
    const faults =
      faultKinds.length > 0
        ? runFaults(ctx, { untilMs: durationMs, gapMs: [1_500, 3_500], kinds: faultKinds }).then(
            (records) => {
              log(`faults stopped after ${records.length}`);
              return records;
            },
          )
        : Promise.resolve([]);
    const [results, faultRecords] = await Promise.all([load, faults]);
    void loadDone;
    const loadMs = Date.now() - loadStarted;
    clearInterval(ticker);
    await probe.close();

    log("draining: waiting until every order in MongoDB is final");
    const drained = await drain(cluster.env.MONGO_URL as string, drainTimeoutS * 1000, log);
    log(
      drained.drained
        ? `drained in ${(drained.ms / 1000).toFixed(1)} s`
        : `NOT drained after ${drainTimeoutS} s: ${formatCounts(drained.counts)}`,
    );
    log("waiting for the execution actors to apply every report the venue sent");
    const executions = await awaitExecutions(cluster.env, cluster.venue, fillsTimeoutS * 1000, log);
    log(
      executions.caughtUp
        ? `executions caught up in ${(executions.ms / 1000).toFixed(1)} s: ${executions.reportsSent} reports`
        : `executions NOT caught up after ${fillsTimeoutS} s`,
    );
    log("checking MongoDB against the client log and the venue");
    const { checks, violations, samples } = await check(results, cluster.env, cluster.venue, executions, {
      inFlightWindowMs: REQUEST_DEADLINE_MS * 2 + 2_000,
    });
    if (!drained.drained) violations.unshift(`the backlog did not drain within ${drainTimeoutS} s`);

    const report: ChaosReport = {
      tool: "bench/chaos.ts",
      command: `bun bench/chaos.ts ${process.argv.slice(2).join(" ")}`.trim(),
      ok: violations.length === 0,
      violations,
      config: {
        seed,
        orders,
        durationS,
        actors: actorCount,
        concurrency,
        faultKinds,
        drainTimeoutS,
        fillsTimeoutS,
        clientTimeoutMs: CLIENT_TIMEOUT_MS,
        maxAttemptsPerRequest: MAX_ATTEMPTS,
        venue: VENUE,
        timings: TIMINGS,
        mongo: mongoKind,
      },
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        // Other work on the machine skews latency: the 1-minute load average when the run ended.
        loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
        platform: `${process.platform} ${process.arch}`,
        bun: Bun.version,
      },
      startedAt: new Date(started).toISOString(),
      timings: { loadMs, drainMs: drained.ms, totalMs: Date.now() - started, drained: drained.drained },
      requests: requestSummary(results),
      faults: faultSummary(faultRecords),
      drain: drained,
      checks,
      latency: latencyReport(results, faultRecords),
      samples,
    };
    writeJsonReport(reportPath, report);
    const logDir = `${reportPath.replace(/\.json$/, "")}-logs`;
    cluster.writeLogs(logDir);
    process.stdout.write(`\n${summaryText(report)}\n\nreport: ${reportPath}\nprocess logs: ${logDir}/\n`);
    return report.ok ? 0 : 1;
  } finally {
    await cluster.stop();
  }
}

runBenchmark("chaos", main, 2);
