import { cpus, loadavg, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../test/support/system.ts";
import { createStatusProbe } from "./chaos/checker.ts";
import { Cluster, metricSum, type Service } from "./chaos/cluster.ts";
import { closedLoop } from "./chaos/load.ts";
import { formatTable, summarize } from "./chaos/stats.ts";
import { runBenchmark, writeJsonReport } from "./output.ts";

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
const orders = Number(args.orders ?? (smoke ? 200 : 2_000));
const concurrency = Number(args.concurrency ?? 16);
const idleS = Number(args["idle-s"] ?? (smoke ? 1 : 5));
const drainTimeoutS = Number(args["drain-timeout-s"] ?? 300);
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-memory.json");
for (const [name, value] of [
  ["--orders", orders],
  ["--concurrency", concurrency],
  ["--idle-s", idleS],
  ["--drain-timeout-s", drainTimeoutS],
] as const) {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
}

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

async function sample(service: Service): Promise<MemorySample> {
  const [rss, metricsRss, heap] = await Promise.all([
    psRss(service.pid),
    metricSum(service, "process_resident_memory_bytes").catch(() => null),
    metricSum(service, "nodejs_heap_size_used_bytes").catch(() => null),
  ]);
  return { rssMiB: mib(rss), metricsRssMiB: mib(metricsRss), heapUsedMiB: mib(heap) };
}

async function main(): Promise<undefined> {
  console.log(`memory: api + 1 actors process, ${orders} orders at concurrency ${concurrency}`);
  // Actor concurrency 16 as in the other benchmarks: on FerretDB every claim scans the collection.
  const cluster = await Cluster.start({
    actors: 1,
    venue: { failureRate: 0, latencyMs: 20 },
    env: { ACTOR_CONCURRENCY: "16" },
  });
  const actors = cluster.actors[0] as Service;
  const targets = { api: cluster.api, actors };
  try {
    await Bun.sleep(idleS * 1000);
    const idle = { api: await sample(cluster.api), actors: await sample(actors) };
    console.log(`  idle: api ${idle.api.rssMiB} MiB, actors ${idle.actors.rssMiB} MiB`);

    const peak = { api: { ...idle.api }, actors: { ...idle.actors } };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const [name, service] of Object.entries(targets) as [keyof typeof targets, Service][]) {
          const now = await sample(service).catch(() => null);
          if (!now) continue;
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
    const samples = await closedLoop({ baseUrl: cluster.api.baseUrl, concurrency, requests: orders });
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
    console.log(
      `\n${samples.length} orders (${samples.filter((s) => s.status === 201).length} answered 201) in ${loadS.toFixed(1)} s, p99 ${latency.p99} ms; backlog ${drained ? "drained" : "NOT drained"} ${drainS.toFixed(0)} s later`,
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
        answered201: samples.filter((s) => s.status === 201).length,
        seconds: loadS,
        latencyMs: latency,
      },
      drain: { drained, seconds: drainS },
      memoryMiB: { idle, peak, endOfLoad, after },
    };
    writeJsonReport(jsonPath, report);
    console.log(`json: ${jsonPath}`);
  } finally {
    await cluster.stop();
  }
}

runBenchmark("memory", main);
