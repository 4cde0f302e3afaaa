import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../test/support/system.ts";
import { createStatusProbe } from "./chaos/checker.ts";
import { Cluster, type Service } from "./chaos/cluster.ts";
import { clientAuthorizations, closedLoop } from "./chaos/load.ts";
import { formatTable, summarize, tally } from "./chaos/stats.ts";
import { exitUnlessPositive, runBenchmark, writeJsonReport } from "./output.ts";
import { type MetricSample, scrape, total } from "./process-stats.ts";

const { values: args } = parseArgs({
  options: {
    orders: { type: "string" },
    concurrency: { type: "string" },
    "idle-s": { type: "string" },
    "drain-timeout-s": { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const smoke = args.smoke === true;
// Enough orders at 64 clients to keep every handler of the actor busy (2 x ACTOR_CONCURRENCY: the venue
// slots and the outcomes being recorded) for most of the load.
const orders = Number(args.orders ?? (smoke ? 200 : 20_000));
const concurrency = Number(args.concurrency ?? (smoke ? 8 : 64));
const idleS = Number(args["idle-s"] ?? (smoke ? 1 : 5));
const drainTimeoutS = Number(args["drain-timeout-s"] ?? 300);
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-memory.json");
exitUnlessPositive("bench:memory", [
  ["--orders", orders],
  ["--concurrency", concurrency],
  ["--idle-s", idleS],
  ["--drain-timeout-s", drainTimeoutS],
]);

/** bench:system's venue: each order holds a venue slot for 500 ms, so the actor's slots fill. */
const VENUE = { failureRate: 0.1, latencyMs: 500 };

const MiB = 1024 * 1024;
const mib = (bytes: number | null) => (bytes === null ? null : Math.round((bytes / MiB) * 10) / 10);

interface MemorySample {
  /** Kernel's RSS (ps), MiB. */
  rssMiB: number | null;
  /** The process's own process_resident_memory_bytes, MiB. */
  metricsRssMiB: number | null;
  heapUsedMiB: number | null;
}

async function psRss(pid: number | undefined): Promise<number | null> {
  if (pid === undefined) return null;
  const out = await Bun.$`ps -o rss= -p ${pid}`.quiet().nothrow().text();
  const kib = Number(out.trim());
  return Number.isFinite(kib) && kib > 0 ? kib * 1024 : null;
}

/** One scrape of the process's /metrics (null when it did not answer), next to the kernel's RSS. */
async function sampleWithMetrics(
  service: Service,
): Promise<{ memory: MemorySample; metrics: MetricSample[] | null }> {
  const [rss, metrics] = await Promise.all([psRss(service.pid), scrape(service).catch(() => null)]);
  const metric = (name: string) => (metrics === null ? null : total(metrics, name));
  return {
    memory: {
      rssMiB: mib(rss),
      metricsRssMiB: mib(metric("process_resident_memory_bytes")),
      heapUsedMiB: mib(metric("nodejs_heap_size_used_bytes")),
    },
    metrics,
  };
}

async function sample(service: Service): Promise<MemorySample> {
  return (await sampleWithMetrics(service)).memory;
}

async function main(): Promise<undefined> {
  console.log(
    `memory: api + 1 actors process (default settings), venue ${VENUE.latencyMs} ms / ${VENUE.failureRate * 100}% failures, ${orders} orders from ${concurrency} clients`,
  );
  const cluster = await Cluster.start({ actors: 1, venue: VENUE, env: {} });
  const actors = cluster.actors[0] as Service;
  const targets = { api: cluster.api, actors };
  try {
    await Bun.sleep(idleS * 1000);
    const idle = { api: await sample(cluster.api), actors: await sample(actors) };
    console.log(`  idle: api ${idle.api.rssMiB} MiB, actors ${idle.actors.rssMiB} MiB`);

    const authorizations = await clientAuthorizations(cluster.env, concurrency, "bench-memory");
    const peak = { api: { ...idle.api }, actors: { ...idle.actors } };
    // The handlers the actor held at once: what its memory is sized by (at most 2 x ACTOR_CONCURRENCY).
    const peakInFlight = { handlers: 0, atVenue: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const [name, service] of Object.entries(targets) as [keyof typeof targets, Service][]) {
          const { memory: now, metrics } = await sampleWithMetrics(service);
          if (name === "actors" && metrics !== null) {
            peakInFlight.handlers = Math.max(
              peakInFlight.handlers,
              total(metrics, "actor_in_flight_messages"),
            );
            peakInFlight.atVenue = Math.max(
              peakInFlight.atVenue,
              total(metrics, "placement_venue_in_flight"),
            );
          }
          for (const key of ["rssMiB", "metricsRssMiB", "heapUsedMiB"] as const) {
            const value = now[key];
            if (value !== null && (peak[name][key] === null || value > (peak[name][key] as number)))
              peak[name][key] = value;
          }
        }
        await Bun.sleep(250);
      }
    })();
    const started = performance.now();
    const samples = await closedLoop({
      baseUrl: cluster.api.baseUrl,
      concurrency,
      requests: orders,
      authorizations,
    });
    const loadS = (performance.now() - started) / 1000;
    const endOfLoad = { api: await sample(cluster.api), actors: await sample(actors) };
    console.log(`  load: ${samples.length} requests in ${loadS.toFixed(1)} s`);

    // Let the actors finish the backlog, then idle again.
    const probe = createStatusProbe(cluster.env.MONGO_URL as string);
    const drainStarted = Date.now();
    let drained = false;
    while (Date.now() - drainStarted < drainTimeoutS * 1000) {
      const counts = await probe.counts();
      if (counts && (counts.accepted ?? 0) + (counts.placing ?? 0) === 0) {
        drained = true;
        break;
      }
      await Bun.sleep(1_000);
    }
    await probe.close();
    sampling = false;
    await sampler;
    const drainS = (Date.now() - drainStarted) / 1000;
    await Bun.sleep(idleS * 1000);
    const after = { api: await sample(cluster.api), actors: await sample(actors) };
    const latency = summarize(samples.map((s) => s.latencyMs));

    const rows: (string | number | null)[][] = [
      [
        "process",
        "idle RSS MiB",
        "peak RSS MiB",
        "end of load MiB",
        "after drain+idle MiB",
        "peak heap used MiB",
        "/metrics RSS idle/peak",
      ],
    ];
    for (const name of ["api", "actors"] as const) {
      rows.push([
        name,
        idle[name].rssMiB,
        peak[name].rssMiB,
        endOfLoad[name].rssMiB,
        after[name].rssMiB,
        peak[name].heapUsedMiB,
        `${idle[name].metricsRssMiB ?? "-"} / ${peak[name].metricsRssMiB ?? "-"}`,
      ]);
    }
    console.log(`\n${formatTable(rows)}`);
    const answered201 = samples.filter((s) => s.status === 201).length;
    const non201: Record<string, number> = {};
    for (const { status } of samples) if (status !== 201) tally(non201, String(status));
    console.log(
      `\n${samples.length} orders (${answered201} answered 201; non-201 ${JSON.stringify(non201)}) in ${loadS.toFixed(1)} s, p99 ${latency.p99} ms; backlog ${drained ? "drained" : "NOT drained"} ${drainS.toFixed(0)} s later`,
    );
    console.log(
      `actor handlers in flight at most ${peakInFlight.handlers} (${peakInFlight.atVenue} at the venue)`,
    );
    const report = {
      tool: "bench/memory.ts",
      command: `bun bench/memory.ts ${process.argv.slice(2).join(" ")}`.trim(),
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        // Other work on the machine skews latency: the 1-minute load average when the run ended.
        loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
        bun: Bun.version,
        mongo: cluster.servers.mongo.kind,
      },
      config: { orders, concurrency, idleS },
      load: {
        requests: samples.length,
        answered201,
        non201,
        seconds: loadS,
        latencyMs: latency,
      },
      drain: { drained, seconds: drainS },
      peakInFlight,
      memoryMiB: { idle, peak, endOfLoad, after },
    };
    writeJsonReport(jsonPath, report);
    console.log(`json: ${jsonPath}`);
  } finally {
    await cluster.stop();
  }
}

runBenchmark("memory", main);
