import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../test/support/system.ts";
import { Cluster, configureVenue, metricSum, type Service, venueStats } from "./chaos/cluster.ts";
import { clientAuthorizations, closedLoop } from "./chaos/load.ts";
import { formatTable, type LatencySummary, ms, summarize } from "./chaos/stats.ts";
import { exitUnlessPositive, runBenchmark, writeJsonReport } from "./output.ts";

const { values: args } = parseArgs({
  options: {
    "duration-s": { type: "string" },
    "warmup-s": { type: "string" },
    concurrency: { type: "string" },
    actors: { type: "string" },
    "actor-concurrency": { type: "string" },
    "venue-latency-ms": { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const smoke = args.smoke === true;
const durationS = Number(args["duration-s"] ?? (smoke ? 2 : 10));
const warmupS = Number(args["warmup-s"] ?? (smoke ? 0.5 : 2));
// Default settings and bench:system's shape (64 clients, each an account of its own; a 500 ms venue);
// --actor-concurrency overrides the actors' default ACTOR_CONCURRENCY.
const concurrency = Number(args.concurrency ?? (smoke ? 4 : 64));
const actorCount = Number(args.actors ?? (smoke ? 1 : 2));
const venueLatencyMs = Number(args["venue-latency-ms"] ?? 500);
const actorConcurrency =
  args["actor-concurrency"] === undefined ? undefined : Number(args["actor-concurrency"]);
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-outage.json");
exitUnlessPositive("bench:outage", [
  ["--duration-s", durationS],
  ["--warmup-s", warmupS],
  ["--concurrency", concurrency],
  ["--actors", actorCount],
  ["--actor-concurrency", actorConcurrency ?? 1],
  ["--venue-latency-ms", venueLatencyMs + 1],
]);

type PhaseName = "actors-paused" | "healthy" | "failing" | "outage" | "healthy-again";
const PHASES: { name: PhaseName; venue: { failure_rate: number; outage: boolean }; pauseActors?: boolean }[] =
  [
    { name: "healthy", venue: { failure_rate: 0, outage: false } },
    { name: "failing", venue: { failure_rate: 1, outage: false } },
    { name: "outage", venue: { failure_rate: 1, outage: true } },
    { name: "healthy-again", venue: { failure_rate: 0, outage: false } },
    // Last: the backlog it leaves would load the database during any phase after it.
    { name: "actors-paused", venue: { failure_rate: 0, outage: false }, pauseActors: true },
  ];

interface ActorCounters {
  placed: number;
  retry: number;
  skipped: number;
  breakerOpened: number;
  breakerState: number;
}

async function actorCounters(actors: Service[]): Promise<ActorCounters> {
  const total: ActorCounters = { placed: 0, retry: 0, skipped: 0, breakerOpened: 0, breakerState: 0 };
  for (const actor of actors) {
    total.placed += (await metricSum(actor, "placement_outcomes_total", { outcome: "placed" })) ?? 0;
    total.retry += (await metricSum(actor, "placement_outcomes_total", { outcome: "retry" })) ?? 0;
    total.skipped += (await metricSum(actor, "placement_outcomes_total", { outcome: "skipped" })) ?? 0;
    total.breakerOpened +=
      (await metricSum(actor, "exchange_breaker_transitions_total", { to: "open" })) ?? 0;
    total.breakerState = Math.max(
      total.breakerState,
      (await metricSum(actor, "exchange_breaker_state")) ?? 0,
    );
  }
  return total;
}

interface PhaseResult {
  phase: PhaseName;
  venueSettings: { failure_rate: number; outage: boolean };
  latencyMs: LatencySummary;
  requests: number;
  requestsPerSecond: number;
  non201: number;
  venue: { submissions: number; failures: number; newOrders: number; submissionsPerSecond: number };
  actors: {
    placed: number;
    retries: number;
    skipped: number;
    breakerOpened: number;
    breakerStateAtEnd: string;
  };
}

const BREAKER = ["closed", "half-open", "open"];

async function main(): Promise<undefined> {
  console.log(
    `latency under outage: ${PHASES.length} phases x ${durationS} s at concurrency ${concurrency}, ${actorCount} actor processes (ACTOR_CONCURRENCY ${actorConcurrency ?? "default"}), venue latency ${venueLatencyMs} ms`,
  );
  const cluster = await Cluster.start({
    actors: actorCount,
    venue: { failureRate: 0, latencyMs: venueLatencyMs },
    env: actorConcurrency === undefined ? {} : { ACTOR_CONCURRENCY: String(actorConcurrency) },
  });
  try {
    const authorizations = await clientAuthorizations(cluster.env, concurrency, "bench-outage");
    // Warm-up: JIT, connection pools, indexes.
    await closedLoop({
      baseUrl: cluster.api.baseUrl,
      concurrency,
      durationMs: warmupS * 1000,
      authorizations,
    });
    const results: PhaseResult[] = [];
    for (const phase of PHASES) {
      await configureVenue(cluster.venue, phase.venue);
      const venueBefore = await venueStats(cluster.venue);
      const actorsBefore = await actorCounters(cluster.actors);
      if (phase.pauseActors) for (const actor of cluster.actors) actor.signal("SIGSTOP");
      const started = performance.now();
      const samples = await closedLoop({
        baseUrl: cluster.api.baseUrl,
        concurrency,
        durationMs: durationS * 1000,
        authorizations,
      });
      const elapsedS = (performance.now() - started) / 1000;
      if (phase.pauseActors) for (const actor of cluster.actors) actor.signal("SIGCONT");
      const venueAfter = await venueStats(cluster.venue);
      const actorsAfter = await actorCounters(cluster.actors);
      const submissions = venueAfter.submissions - venueBefore.submissions;
      const result: PhaseResult = {
        phase: phase.name,
        venueSettings: phase.venue,
        latencyMs: summarize(samples.map((s) => s.latencyMs)),
        requests: samples.length,
        requestsPerSecond: Math.round((samples.length / elapsedS) * 10) / 10,
        non201: samples.filter((s) => s.status !== 201).length,
        venue: {
          submissions,
          failures: venueAfter.failures - venueBefore.failures,
          newOrders: venueAfter.orders - venueBefore.orders,
          submissionsPerSecond: Math.round((submissions / elapsedS) * 10) / 10,
        },
        actors: {
          placed: actorsAfter.placed - actorsBefore.placed,
          retries: actorsAfter.retry - actorsBefore.retry,
          skipped: actorsAfter.skipped - actorsBefore.skipped,
          breakerOpened: actorsAfter.breakerOpened - actorsBefore.breakerOpened,
          breakerStateAtEnd: BREAKER[actorsAfter.breakerState] ?? String(actorsAfter.breakerState),
        },
      };
      results.push(result);
      console.log(
        `  ${phase.name}: ${result.requests} requests, p50 ${ms(result.latencyMs.p50)} ms, p99 ${ms(result.latencyMs.p99)} ms, ${result.non201} non-201, venue submissions ${submissions}`,
      );
    }
    await configureVenue(cluster.venue, { failure_rate: 0, outage: false });

    const healthy = results.find((r) => r.phase === "healthy")?.latencyMs;
    const ratio = (phase: PhaseName, key: "p50" | "p99") => {
      const base = healthy?.[key];
      const value = results.find((r) => r.phase === phase)?.latencyMs[key];
      return base && value !== null && value !== undefined ? Math.round((value / base) * 100) / 100 : null;
    };
    const ratios = {
      actorsPausedP99: ratio("actors-paused", "p99"),
      failingP50: ratio("failing", "p50"),
      failingP99: ratio("failing", "p99"),
      outageP50: ratio("outage", "p50"),
      outageP99: ratio("outage", "p99"),
      healthyAgainP99: ratio("healthy-again", "p99"),
    };
    const mongo = cluster.servers.mongo.kind;
    const report = {
      tool: "bench/latency-under-outage.ts",
      command: `bun bench/latency-under-outage.ts ${process.argv.slice(2).join(" ")}`.trim(),
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        // Other work on the machine skews latency: the 1-minute load average when the run ended.
        loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
        bun: Bun.version,
        mongo,
      },
      config: { durationS, warmupS, concurrency, actors: actorCount, actorConcurrency, venueLatencyMs },
      phases: results,
      ratios,
    };
    const rows: (string | number | null)[][] = [
      [
        "phase",
        "requests",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-201",
        "venue subm/s",
        "placed",
        "retries",
        "breaker",
      ],
      ...results.map((r) => [
        r.phase,
        r.requests,
        r.requestsPerSecond,
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p90),
        ms(r.latencyMs.p99),
        ms(r.latencyMs.max),
        r.non201,
        r.venue.submissionsPerSecond,
        r.actors.placed,
        r.actors.retries,
        `${r.actors.breakerStateAtEnd} (opened ${r.actors.breakerOpened}x)`,
      ]),
    ];
    console.log(`\n${formatTable(rows)}`);
    console.log(
      `\np99 failing/healthy ${ratios.failingP99 ?? "-"}x, outage/healthy ${ratios.outageP99 ?? "-"}x, healthy-again/healthy ${ratios.healthyAgainP99 ?? "-"}x (p50: ${ratios.failingP50 ?? "-"}x, ${ratios.outageP50 ?? "-"}x); MongoDB-wire server: ${mongo}`,
    );
    writeJsonReport(jsonPath, report);
    console.log(`json: ${jsonPath}`);
  } finally {
    await cluster.stop();
  }
}

runBenchmark("latency-under-outage", main);
