/**
 * POST /orders throughput and latency: the real service (`bun src/main.ts api`, a real process,
 * LOG_LEVEL=error) side by side with a floor (bench/floor-server.ts: Bun.serve doing the same insertOne +
 * XADD and nothing else), on the same harness servers (redis-server + MongoDB-wire), at the same fixed
 * concurrencies, one after the other (alternating which goes first), with the orders collection and the
 * stream emptied before every run. Prints a table and the service/floor ratios; writes JSON.
 *
 *   bun bench/intake.ts [--duration-s 10] [--concurrency 8,32,64] [--rounds 1] [--warmup-s 2]
 *                       [--requests N] [--json reports/bench-intake.json] [--smoke] [--assert]
 *
 * --requests N measures a fixed count per run instead of a duration; --rounds R repeats every
 * (target, concurrency) run R times and pools the samples (storage noise evens out); --smoke: tiny
 * sizes for CI (it checks that the benchmark runs, not the target); --assert: exit 1 when a level misses
 * the target. Set TMPDIR (e.g. /dev/shm) to put the servers' data on another file system.
 * Target (issue 3): service >= 0.8x the floor's throughput and p99 <= 1.5x the floor's.
 */
import { readFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import { createRedisKeys } from "../src/adapters/redis-keys.ts";
import { databaseName } from "../src/config.ts";
import { type OwnedProcess, spawnOwned } from "../test/support/servers/child-process.ts";
import {
  bearer,
  createApiKeys,
  isolatedEnv,
  ROOT,
  type Servers,
  startServers,
} from "../test/support/system.ts";
import { freePort, waitFor } from "../test/support/wait-for.ts";
import { exitUnlessPositive, runBenchmark, writeJsonReport } from "./output.ts";

const THROUGHPUT_TARGET = 0.8;
const P99_TARGET = 1.5;
type TargetName = "service" | "floor";

const { values: args } = parseArgs({
  options: {
    "duration-s": { type: "string" },
    "warmup-s": { type: "string" },
    concurrency: { type: "string" },
    rounds: { type: "string" },
    requests: { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
    assert: { type: "boolean", default: false },
  },
});
const smoke = args.smoke === true;
const durationS = Number(args["duration-s"] ?? (smoke ? 1 : 10));
const warmupS = Number(args["warmup-s"] ?? (smoke ? 0.5 : 2));
const rounds = Number(args.rounds ?? 1);
const requests = args.requests === undefined ? undefined : Number(args.requests);
const levels = (args.concurrency ?? (smoke ? "4,16" : "8,32,64")).split(",").map(Number);
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-intake.json");
exitUnlessPositive("bench:intake", [
  ["--duration-s", durationS],
  ["--warmup-s", warmupS],
  ["--rounds", rounds],
  ["--requests", requests ?? 1],
  ...levels.map((level) => ["--concurrency", level] as const),
]);

/** A market and a limit order, alternated: the service parses both price forms' paths. */
const BODIES = [
  JSON.stringify({ type: "market", side: "buy", instrument: "US0378331005", quantity: 10 }),
  JSON.stringify({
    type: "limit",
    side: "sell",
    instrument: "DE0007164600",
    limit_price: "123.45",
    quantity: 5,
  }),
];

interface Sample {
  latencies: number[];
  statuses: Record<string, number>;
  errors: number;
  seconds: number;
  cpuMs: number;
}

interface Summary {
  target: TargetName;
  concurrency: number;
  requests: number;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  seconds: number;
  throughput: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  /** CPU time (user + system) of the target process per successful request: its own cost, free of queueing. */
  cpu_ms_per_request: number;
}

/** User + system CPU time of a process in ms, from /proc (Linux; NaN elsewhere). */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}
const CLOCK_TICKS_PER_S = 100;

/** N workers, each sending one request after the other, until the deadline or the request count. */
async function load(
  target: Pick<Target, "baseUrl" | "pid" | "authorizations">,
  concurrency: number,
  stop: { seconds: number } | { count: number },
): Promise<Sample> {
  const url = `${target.baseUrl}/orders`;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let issued = 0;
  let errors = 0;
  const cpuBefore = cpuMs(target.pid);
  const started = performance.now();
  const deadline = "seconds" in stop ? started + stop.seconds * 1000 : Number.POSITIVE_INFINITY;
  const limit = "count" in stop ? stop.count : Number.POSITIVE_INFINITY;
  // Client i takes its turn over accounts i, i + concurrency, ...: at low concurrency a client sends
  // faster than one account's rate limit allows, and the benchmark measures the service, not the limit.
  const keys = target.authorizations;
  const worker = async (client: number) => {
    let sent = 0;
    while (issued < limit && performance.now() < deadline) {
      const authorization = keys[(client + concurrency * sent++) % keys.length] ?? {};
      const body = BODIES[issued++ % BODIES.length];
      const t0 = performance.now();
      try {
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", ...authorization },
          body,
        });
        await response.arrayBuffer();
        const ms = performance.now() - t0;
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        if (response.status === 201) latencies.push(ms);
        else errors++;
      } catch {
        statuses.network = (statuses.network ?? 0) + 1;
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, client) => worker(client)));
  return {
    latencies,
    statuses,
    errors,
    seconds: (performance.now() - started) / 1000,
    cpuMs: cpuMs(target.pid) - cpuBefore,
  };
}

function summarise(target: TargetName, concurrency: number, samples: Sample[]): Summary {
  const latencies = samples.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const seconds = samples.reduce((sum, s) => sum + s.seconds, 0);
  const errors = samples.reduce((sum, s) => sum + s.errors, 0);
  const statuses: Record<string, number> = {};
  for (const sample of samples) {
    for (const [status, count] of Object.entries(sample.statuses))
      statuses[status] = (statuses[status] ?? 0) + count;
  }
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? Number.NaN;
  return {
    target,
    concurrency,
    requests: latencies.length + errors,
    ok: latencies.length,
    errors,
    statuses,
    seconds,
    throughput: latencies.length / seconds,
    p50_ms: pct(50),
    p90_ms: pct(90),
    p99_ms: pct(99),
    max_ms: latencies.at(-1) ?? Number.NaN,
    cpu_ms_per_request: samples.reduce((sum, s) => sum + s.cpuMs, 0) / latencies.length,
  };
}

/** Empty collection (with the service's indexes, so that both targets pay the same index upkeep) and stream. */
async function resetStorage(env: Record<string, string>, mongo: MongoClient, servers: Servers) {
  const db = mongo.db(databaseName(env.MONGO_URL!));
  await db
    .collection("orders")
    .drop()
    .catch(() => {});
  await new MongoOrderRepository(db, { timeoutMs: 5_000 }).ensureIndexes();
  const stream = createRedisKeys(env.REDIS_KEY_PREFIX!, 1).placementStream(0);
  const done = Promise.withResolvers<void>();
  const redis = await Bun.connect({
    hostname: "127.0.0.1",
    port: servers.redis.port,
    socket: { data: () => done.resolve(), error: (_socket, error) => done.reject(error) },
  });
  redis.write(`*2\r\n$3\r\nDEL\r\n$${stream.length}\r\n${stream}\r\n`);
  await done.promise;
  redis.end();
}

interface Target {
  process: OwnedProcess;
  baseUrl: string;
  pid: number;
  /** One Authorization header per client (the service: one account each, as client companies are). */
  authorizations: Record<string, string>[];
}

async function startTarget(name: TargetName, env: Record<string, string>): Promise<Target> {
  const port = await freePort();
  const opsPort = await freePort();
  const childEnv = {
    ...process.env,
    ...env,
    PORT: String(port),
    OPS_PORT: String(opsPort),
    LOG_LEVEL: "error",
  };
  const cmd =
    name === "service"
      ? ["bun", resolve(ROOT, "src/main.ts"), "api"]
      : ["bun", resolve(ROOT, "bench/floor-server.ts")];
  const owned = spawnOwned(name, cmd, { env: childEnv, cwd: ROOT });
  const baseUrl = `http://127.0.0.1:${port}`;
  // The service answers its probes on its operations port; the floor on its one port.
  const probe = name === "service" ? `http://127.0.0.1:${opsPort}/health/ready` : `${baseUrl}/health`;
  let exited = false;
  void owned.exited.then(() => {
    exited = true;
  });
  await waitFor(
    async () => {
      if (exited) throw new Error(`${name} exited`);
      return (await fetch(probe)).status === 200;
    },
    { timeoutMs: 30_000, intervalMs: 100, message: `${name} ready` },
  ).catch((error) => {
    throw new Error(`${(error as Error).message}\n${owned.logs.slice(-2000)}`);
  });
  return { process: owned, baseUrl, pid: owned.pid, authorizations: [] };
}

async function stopTarget(target: Target | undefined) {
  if (!target) return;
  target.process.signal("SIGTERM");
  const exited = await Promise.race([
    target.process.exited.then(() => true),
    Bun.sleep(10_000).then(() => false),
  ]);
  if (!exited) await target.process.kill();
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

function printTable(summaries: Summary[]) {
  const header = ["target", "concurrency", "requests", "req/s", "p50 ms", "p99 ms", "errors", "cpu ms/req"];
  const rows = summaries.map((s) => [
    s.target,
    String(s.concurrency),
    String(s.requests),
    fmt(s.throughput, 0),
    fmt(s.p50_ms, 2),
    fmt(s.p99_ms, 2),
    String(s.errors),
    fmt(s.cpu_ms_per_request, 3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

function compare(summaries: Summary[]) {
  return levels.map((concurrency) => {
    const of = (target: TargetName) =>
      summaries.find((s) => s.target === target && s.concurrency === concurrency)!;
    const service = of("service");
    const floor = of("floor");
    const throughputRatio = service.throughput / floor.throughput;
    const p99Ratio = service.p99_ms / floor.p99_ms;
    return {
      concurrency,
      throughput_ratio: throughputRatio,
      p99_ratio: p99Ratio,
      cpu_ratio: service.cpu_ms_per_request / floor.cpu_ms_per_request,
      service_errors: service.errors,
      floor_errors: floor.errors,
      // A non-201 (a 429 included) means the run measured something other than intake.
      meets_target:
        throughputRatio >= THROUGHPUT_TARGET && p99Ratio <= P99_TARGET && service.errors + floor.errors === 0,
    };
  });
}

async function main(): Promise<number> {
  const servers = await startServers();
  const env = isolatedEnv(servers, { LOG_LEVEL: "error" });
  const mongo = new MongoClient(env.MONGO_URL!, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 8 });
  const targets: Partial<Record<TargetName, Target>> = {};
  const loadBefore = loadavg();
  try {
    await resetStorage(env, mongo, servers);
    targets.service = await startTarget("service", env);
    // Authentication and the per-account rate limit on, as by default: one account per client at the
    // highest concurrency, shared out in turns at lower ones, so that no account goes over its rate.
    const accounts = Array.from({ length: Math.max(...levels) }, (_, i) => `bench-client-${i}`);
    targets.service.authorizations = (await createApiKeys(env, accounts, "bench:intake")).map(bearer);
    targets.floor = await startTarget("floor", env);
    const stop = requests !== undefined ? { count: requests } : { seconds: durationS };
    console.log(
      `bench:intake  ${servers.mongo.kind} + redis-server (data in ${tmpdir()})  ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}  ` +
        `${requests !== undefined ? `${requests} requests` : `${durationS} s`} per run, ${rounds} round(s), warm-up ${warmupS} s, ` +
        `load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")}`,
    );
    const summaries: Summary[] = [];
    const runs: (Omit<Summary, "target" | "concurrency"> & {
      target: TargetName;
      concurrency: number;
      round: number;
    })[] = [];
    for (const [i, concurrency] of levels.entries()) {
      const samples: Record<TargetName, Sample[]> = { service: [], floor: [] };
      for (let round = 1; round <= rounds; round++) {
        // Alternate which target goes first, so that neither always meets a warmer or fuller server.
        const order: TargetName[] = (i + round) % 2 === 1 ? ["service", "floor"] : ["floor", "service"];
        for (const name of order) {
          const target = targets[name]!;
          await resetStorage(env, mongo, servers);
          await load(target, concurrency, { seconds: warmupS });
          const sample = await load(target, concurrency, stop);
          samples[name].push(sample);
          const one = summarise(name, concurrency, [sample]);
          runs.push({ ...one, round });
          console.log(
            `  ${name.padEnd(7)} c=${String(concurrency).padEnd(3)} round ${round}: ${fmt(one.throughput, 0)} req/s  ` +
              `p50 ${fmt(one.p50_ms, 2)} ms  p99 ${fmt(one.p99_ms, 2)} ms  errors ${one.errors}  cpu ${fmt(one.cpu_ms_per_request, 3)} ms/req`,
          );
        }
      }
      summaries.push(summarise("service", concurrency, samples.service));
      summaries.push(summarise("floor", concurrency, samples.floor));
    }
    await resetStorage(env, mongo, servers);

    console.log("");
    printTable(summaries);
    console.log("");
    const compared = compare(summaries);
    for (const r of compared) {
      console.log(
        `service/floor at c=${r.concurrency}: throughput ${fmt(r.throughput_ratio, 2)}x (target >= ${THROUGHPUT_TARGET}), ` +
          `p99 ${fmt(r.p99_ratio, 2)}x (target <= ${P99_TARGET}), cpu/request ${fmt(r.cpu_ratio, 2)}x  ${r.meets_target ? "ok" : "MISSED"}`,
      );
    }
    const report = {
      benchmark: "intake",
      date: new Date().toISOString(),
      command: `bun bench/intake.ts ${process.argv.slice(2).join(" ")}`.trim(),
      machine: {
        cpus: cpus().length,
        cpu_model: cpus()[0]?.model,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        platform: `${process.platform} ${process.arch}`,
        bun: Bun.version,
        data_dir: tmpdir(),
        // Other work on the machine skews both targets; the ratios are what the benchmark judges.
        load_average_before: loadBefore,
        load_average_after: loadavg(),
      },
      servers: { mongo: servers.mongo.kind, redis: servers.redis.kind },
      settings: {
        duration_s: durationS,
        warmup_s: warmupS,
        rounds,
        requests: requests ?? null,
        concurrency: levels,
        smoke,
      },
      targets: { throughput_ratio_min: THROUGHPUT_TARGET, p99_ratio_max: P99_TARGET },
      summaries,
      ratios: compared,
      runs,
    };
    writeJsonReport(jsonPath, report);
    console.log(`\nwrote ${jsonPath}`);
    let code = 0;
    if (args.assert && compared.some((r) => !r.meets_target)) {
      console.error("bench:intake: the service missed the target at some concurrency");
      code = 1;
    }
    const empty = summaries.filter((s) => s.ok === 0);
    if (empty.length > 0) {
      console.error(
        `no successful request for ${empty.map((s) => `${s.target} c=${s.concurrency}`).join(", ")}`,
      );
      code = 1;
    }
    return code;
  } finally {
    await Promise.allSettled([stopTarget(targets.service), stopTarget(targets.floor)]);
    await mongo.close().catch(() => {});
    await servers.stop();
  }
}

runBenchmark("bench:intake", main);
