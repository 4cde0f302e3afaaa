/**
 * The whole system under sustained load (issue #9), every component a real process on the harness's
 * servers (redis-server + the default MongoDB-wire store of startMongo()):
 *
 *   Phase A, the floor: bench/floor-server.ts (Bun.serve doing insertOne + XADD, nothing else), then the
 *   `api` alone (no actors), each driven for --floor-s seconds by the same load generator as phase B.
 *   Phase B, the system: the simulated venue (`orders exchange`, 500 ms, 10% failures), one `api` and two
 *   `actors` processes with DEFAULT settings (only ports, URLs, key prefix and EXCHANGE_URL are set);
 *   after --warmup-s seconds of the same load and its drain (phase A's intake runs warm up too),
 *   --clients clients POST valid orders for --duration-s seconds; then the load stops and --probe-clients
 *   keep POSTing while the backlog drains, until every order accepted during the load is final in
 *   MongoDB (or --drain-timeout-s passes).
 *   Then the floor once more: the ratio is placed/s sustained over the mean of the floors before and
 *   after phase B, since this machine's speed drifts within minutes.
 *
 *   bun bench/system.ts [--duration-s 60] [--clients 64] [--floor-s 15] [--warmup-s 5] [--probe-clients 2]
 *                       [--drain-timeout-s 900] [--env KEY=VALUE]... [--json reports/bench-system.json]
 *                       [--pg-stats]
 *                       [--smoke]
 *
 * --env sets a variable of the api and actors processes (an experiment; the targets are judged on the
 * defaults, and the report names every override). --pg-stats (FerretDB on PostgreSQL only) prints the
 * SQL statements of phase B by cost per placed order (pg_stat_statements).
 *
 * The load generator is this file run as a child process (--load-child), so that the orchestrator's
 * polling never delays a request's clock: N closed loops of fetch (keep-alive), each request timed from
 * send to the end of its body; the child writes every latency, status and 201's order id to a file.
 * Closed loops under-report the tail when the server stalls (coordinated omission): read p99 with that.
 *
 * Reported: accepted/s (201s per second of load), placed/s during the load and sustained over load +
 * drain, drain time, intake p50/p99 during the load and while draining, non-201 by status, MongoDB
 * commands and durable writes per placed order (the deltas of orders_mongo_operations_total and
 * orders_mongo_durable_writes_total over the api and both actors), venue duplicates, the floor and the
 * ratio, the actors' slots (the venue-bound ceiling, how full the slots were, how long a submission held
 * one), CPU per process. Correctness at the end: every 201's order is placed or rejected in MongoDB, and
 * the venue holds exactly the orders MongoDB has placed.
 *
 * Exit: 0 when the run completed (targets met or not), 3 when an accepted order is not final or the venue
 * disagrees with MongoDB (a lost or doubly placed order), 1 on a crash.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { placementHandlers } from "../actors/placement/placement-actor.ts";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import { databaseName, loadConfig } from "../src/config.ts";
import { spawnVenue, venueStats } from "../test/support/placement.ts";
import { type OwnedProcess, spawnOwned } from "../test/support/servers/child-process.ts";
import {
  Cleanup,
  isolatedEnv,
  ROOT,
  type Servers,
  type ServiceProcess,
  spawnService,
  startServers,
} from "../test/support/system.ts";
import { freePort, uniqueName, waitFor } from "../test/support/wait-for.ts";
import { clientAuthorizations } from "./chaos/load.ts";
import { exitUnlessPositive, runBenchmark, writeJsonReport } from "./output.ts";
import {
  enableStatementStatistics,
  resetStatementStatistics,
  statementCosts,
  statementTable,
} from "./pg-statements.ts";
import {
  cpuMeter,
  type MetricSample,
  processCpuMs,
  scrape,
  serverCpuMs,
  storeCpuMs,
  table,
  total,
} from "./process-stats.ts";

const TARGETS = {
  placedOfFloor: 0.35,
  drainP99Ms: 250,
  non201: 0,
  durableWritesPerPlaced: 2,
} as const;
const VENUE = { latencyMs: 500, failureRate: 0.1 } as const;
/**
 * Phase B reads every process's /metrics this often for its timeline: as often as the compose stack's
 * Prometheus (k8s/prometheus/prometheus.compose.yml; the cluster's scrapes every 15 s). A scrape is not
 * free (prom-client's default collectors, the stream gauges' Redis calls): every second it cost the
 * api and the actors 3-5% of their CPU in Bun's profiler, which no deployment pays.
 */
const SAMPLE_INTERVAL_MS = 5_000;

const { values: args } = parseArgs({
  options: {
    "load-child": { type: "boolean", default: false },
    url: { type: "string" },
    out: { type: "string" },
    "duration-s": { type: "string" },
    clients: { type: "string" },
    "floor-s": { type: "string" },
    "warmup-s": { type: "string" },
    "probe-clients": { type: "string" },
    "drain-timeout-s": { type: "string" },
    env: { type: "string", multiple: true },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
    "pg-stats": { type: "boolean", default: false },
  },
});

const smoke = args.smoke === true;
const settings = {
  durationS: Number(args["duration-s"] ?? (smoke ? 5 : 60)),
  clients: Number(args.clients ?? (smoke ? 8 : 64)),
  floorS: Number(args["floor-s"] ?? (smoke ? 3 : 15)),
  warmupS: Number(args["warmup-s"] ?? (smoke ? 1 : 5)),
  probeClients: Number(args["probe-clients"] ?? 2),
  drainTimeoutS: Number(args["drain-timeout-s"] ?? (smoke ? 120 : 900)),
  smoke,
};
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-system.json");
/** --env KEY=VALUE (repeatable): settings of the api and actors processes other than the defaults. */
const overrides: Record<string, string> = Object.fromEntries(
  (args.env ?? []).map((pair) => {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`--env wants KEY=VALUE, got ${pair}`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  }),
);

// ---------------------------------------------------------------------------------------------------
// The load generator (--load-child): closed loops of POST /orders.

/** Valid orders: market and limit, buy and sell, both price forms, several instruments and sizes. */
const BODIES = [
  { type: "market", side: "buy", instrument: "US0378331005", quantity: 10 },
  { type: "limit", side: "sell", instrument: "DE0007164600", limit_price: "123.45", quantity: 5 },
  { type: "market", side: "sell", instrument: "US5949181045", quantity: 3 },
  { type: "limit", side: "buy", instrument: "US0378331005", limit_price: 189.99, quantity: 1 },
  { type: "limit", side: "buy", instrument: "NL0010273215", limit_price: "612.5", quantity: 7 },
  { type: "market", side: "buy", instrument: "DE0007164600", quantity: 250 },
  { type: "limit", side: "sell", instrument: "US5949181045", limit_price: 401, quantity: 12 },
  { type: "market", side: "sell", instrument: "NL0010273215", quantity: 1 },
].map((body) => JSON.stringify(body));
const REQUEST_TIMEOUT_MS = 30_000;
const ORDER_ID = /"id":"([^"]+)"/;

interface LoadResult {
  seconds: number;
  /** Send to end of body, ms, of every answered request (any status). */
  latencies: number[];
  statuses: Record<string, number>;
  /** Order ids of the 201s. */
  ids: string[];
  /** 201s per second since the start. */
  perSecond: number[];
  cpuMs: number;
}

async function runLoadChild(): Promise<void> {
  const url = `${args.url}/orders`;
  const clients = Number(args.clients);
  const durationMs = Number(args["duration-s"]) * 1000;
  let stopping = false;
  process.once("SIGTERM", () => {
    stopping = true;
  });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const ids: string[] = [];
  const perSecond: number[] = [];
  const cpuBefore = process.cpuUsage();
  let issued = 0;
  process.stdout.write("load started\n");
  const started = performance.now();
  const deadline = durationMs > 0 ? started + durationMs : Number.POSITIVE_INFINITY;
  // One API key per client (handed over in the environment, not on the command line).
  const authorizations = JSON.parse(process.env.BENCH_AUTHORIZATIONS ?? "[]") as string[];
  const worker = async (client: number) => {
    const authorization = authorizations[client % authorizations.length];
    const headers = { "content-type": "application/json", ...(authorization ? { authorization } : {}) };
    while (!stopping && performance.now() < deadline) {
      const body = BODIES[issued++ % BODIES.length]!;
      const t0 = performance.now();
      let status: string;
      try {
        const response = await fetch(url, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const text = await response.text();
        status = String(response.status);
        if (response.status === 201) {
          const id = ORDER_ID.exec(text)?.[1];
          if (id) ids.push(id);
          else status = "201 without id";
        }
      } catch (error) {
        status = (error as Error).name === "TimeoutError" ? "timeout" : "network error";
      }
      const t1 = performance.now();
      latencies.push(Math.round((t1 - t0) * 100) / 100);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status === "201") {
        const second = Math.floor((t1 - started) / 1000);
        perSecond[second] = (perSecond[second] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, client) => worker(client)));
  const cpu = process.cpuUsage(cpuBefore);
  const result: LoadResult = {
    seconds: (performance.now() - started) / 1000,
    latencies,
    statuses,
    ids,
    perSecond: Array.from(perSecond, (n) => n ?? 0),
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  writeFileSync(args.out!, JSON.stringify(result));
}

/** A running load child; `result()` waits for it to end (at its duration, or after stop()). */
interface Load {
  process: OwnedProcess;
  stop(): void;
  result(): Promise<LoadResult>;
}

/**
 * `authorizations`: one Authorization header per client. The service runs with authentication and the
 * per-account rate limit on, as by default: each client is an account of its own (a client company).
 */
async function startLoad(
  baseUrl: string,
  clients: number,
  durationS: number,
  authorizations: string[] = [],
): Promise<Load> {
  const out = join(tmpdir(), `${uniqueName("bench-system-load")}.json`);
  const child = spawnOwned(
    "load",
    [
      "bun",
      resolve(ROOT, "bench/system.ts"),
      "--load-child",
      "--url",
      baseUrl,
      "--clients",
      String(clients),
      "--duration-s",
      String(durationS),
      "--out",
      out,
    ],
    { cwd: ROOT, env: { ...process.env, BENCH_AUTHORIZATIONS: JSON.stringify(authorizations) } },
  );
  await child.waitForOutput(/^load started$/m, 30_000);
  return {
    process: child,
    stop: () => child.signal("SIGTERM"),
    async result() {
      const code = await child.exited;
      if (code !== 0) throw new Error(`load generator exited with ${code}:\n${child.logs.slice(-4000)}`);
      try {
        return JSON.parse(readFileSync(out, "utf8")) as LoadResult;
      } finally {
        rmSync(out, { force: true });
      }
    },
  };
}

async function runLoad(
  baseUrl: string,
  clients: number,
  durationS: number,
  authorizations: string[] = [],
): Promise<LoadResult> {
  return (await startLoad(baseUrl, clients, durationS, authorizations)).result();
}

// ---------------------------------------------------------------------------------------------------
// Read-outs: metric deltas, latency percentiles, log problems (/metrics and CPU: process-stats.ts).

/** `name` summed per value of `label`. */
function byLabel(samples: MetricSample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = s.labels[label] ?? "";
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

function subtract(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(after)) {
    const delta = value - (before[key] ?? 0);
    if (delta !== 0) out[key] = delta;
  }
  return out;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

interface LatencySummary {
  requests: number;
  ok: number;
  non201: Record<string, number>;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
}

function summariseLatency(load: LoadResult): LatencySummary {
  const sorted = [...load.latencies].sort((a, b) => a - b);
  const non201 = Object.fromEntries(Object.entries(load.statuses).filter(([status]) => status !== "201"));
  return {
    requests: load.latencies.length,
    ok: load.statuses["201"] ?? 0,
    non201,
    p50_ms: percentile(sorted, 50),
    p90_ms: percentile(sorted, 90),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.at(-1) ?? Number.NaN,
  };
}

/** warn and error lines of a process's JSON log, grouped by message. */
function logProblems(
  name: string,
  owned: OwnedProcess,
): { process: string; level: string; msg: string; count: number; example: string }[] {
  const groups = new Map<
    string,
    { process: string; level: string; msg: string; count: number; example: string }
  >();
  for (const line of owned.logs.split("\n")) {
    if (line.trim() === "") continue;
    let level = "unparsed";
    let msg = line.slice(0, 200);
    try {
      const parsed = JSON.parse(line) as { level?: string; msg?: string; message?: string };
      level = parsed.level ?? "unknown";
      msg = parsed.msg ?? parsed.message ?? msg;
    } catch {
      // not a JSON line (a crash trace, a runtime warning): kept as is
    }
    if (level === "info" || level === "debug") continue;
    const key = `${level}\u0000${msg}`;
    const group = groups.get(key) ?? { process: name, level, msg, count: 0, example: line.slice(0, 600) };
    group.count += 1;
    groups.set(key, group);
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

async function stopProcess(owned: OwnedProcess, graceMs = 30_000): Promise<number | "killed"> {
  owned.signal("SIGTERM");
  const exited = await Promise.race([owned.exited, Bun.sleep(graceMs).then(() => null)]);
  if (exited !== null) return exited;
  await owned.kill();
  return "killed";
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

// ---------------------------------------------------------------------------------------------------
// Phase A: the floor and the api alone.

interface IntakeRun {
  target: "floor" | "api (no actors)" | "floor after B";
  clients: number;
  seconds: number;
  accepted_per_s: number;
  latency: LatencySummary;
  /** CPU of the target process per 201. */
  cpu_ms_per_order: number;
  /** CPU of the MongoDB-wire store (FerretDB and its PostgreSQL) per 201. */
  store_cpu_ms_per_order: number;
  load_generator_cpu_ms: number;
}

function mongoClient(env: Record<string, string>) {
  // A small pool: FerretDB deadlocks when its clients together hold more connections than its own pool.
  const client = new MongoClient(env.MONGO_URL!, { serverSelectionTimeoutMS: 10_000, maxPoolSize: 4 });
  const db = client.db(databaseName(env.MONGO_URL!));
  return { client, db, orders: db.collection<{ _id: string; status: string; created_at: Date }>("orders") };
}

async function intakeOnly(servers: Servers, target: IntakeRun["target"]): Promise<IntakeRun> {
  const env = isolatedEnv(servers, { LOG_LEVEL: "error", ...overrides });
  const mongo = mongoClient(env);
  let owned: OwnedProcess | undefined;
  try {
    // The service's indexes on the floor's collection too: both pay the same index upkeep.
    await new MongoOrderRepository(mongo.db, { timeoutMs: 10_000 }).ensureIndexes();
    let baseUrl: string;
    let authorizations: string[] = [];
    if (target !== "api (no actors)") {
      const port = await freePort();
      owned = spawnOwned("floor", ["bun", resolve(ROOT, "bench/floor-server.ts")], {
        env: { ...process.env, ...env, PORT: String(port) },
        cwd: ROOT,
      });
      await owned.waitForOutput(/floor listening \d+/, 30_000);
      baseUrl = `http://127.0.0.1:${port}`;
    } else {
      const api = await spawnService("api", env);
      owned = api.process;
      baseUrl = api.baseUrl;
      authorizations = await clientAuthorizations(env, settings.clients, "bench");
    }
    await runLoad(baseUrl, settings.clients, settings.warmupS, authorizations);
    const cpuBefore = processCpuMs(owned.pid)[0];
    const storeBefore = storeCpuMs(servers);
    const load = await runLoad(baseUrl, settings.clients, settings.floorS, authorizations);
    const cpuMs = processCpuMs(owned.pid)[0] - cpuBefore;
    const storeMs = storeCpuMs(servers) - storeBefore;
    const latency = summariseLatency(load);
    const run: IntakeRun = {
      target,
      clients: settings.clients,
      seconds: load.seconds,
      accepted_per_s: latency.ok / load.seconds,
      latency,
      cpu_ms_per_order: cpuMs / latency.ok,
      store_cpu_ms_per_order: storeMs / latency.ok,
      load_generator_cpu_ms: Math.round(load.cpuMs),
    };
    console.log(
      `  ${target.padEnd(15)} ${fmt(run.accepted_per_s, 0)} orders/s  p50 ${fmt(latency.p50_ms, 1)} ms  ` +
        `p99 ${fmt(latency.p99_ms, 1)} ms  non-201 ${JSON.stringify(latency.non201)}  ` +
        `cpu ${fmt(run.cpu_ms_per_order, 3)} ms/order, store ${fmt(run.store_cpu_ms_per_order, 3)} ms/order (load generator ${fmt(load.cpuMs / latency.requests, 3)} ms/request)`,
    );
    return run;
  } finally {
    if (owned) await stopProcess(owned, 10_000);
    // Its orders would only make the store bigger for the next phase.
    await mongo.db.dropDatabase().catch(() => {});
    await mongo.client.close();
  }
}

/**
 * The floor on both sides of phase B: the mean of the two rates, and the CPU per order (server, store,
 * load generator) over both runs.
 */
function bracketedFloor(before: IntakeRun, after: IntakeRun) {
  const orders = before.latency.ok + after.latency.ok;
  const cpuPerOrder = (r: IntakeRun) =>
    r.cpu_ms_per_order + r.store_cpu_ms_per_order + r.load_generator_cpu_ms / r.latency.ok;
  return {
    accepted_per_s: (before.accepted_per_s + after.accepted_per_s) / 2,
    cpu_ms_per_order:
      (cpuPerOrder(before) * before.latency.ok + cpuPerOrder(after) * after.latency.ok) / orders,
  };
}

// ---------------------------------------------------------------------------------------------------
// Phase B: the system.

interface Snapshot {
  api: MetricSample[];
  actors: MetricSample[][];
}

interface TimelineRow {
  t_s: number;
  phase: "load" | "drain" | "tail";
  accepted: number;
  placed: number;
  retries: number;
  backlog: number;
  in_flight: number;
  /** Of those in flight, the orders at the venue (the venue slots). */
  at_venue: number;
}

/**
 * The actors' venue slots during the load (ACTOR_CONCURRENCY per process, held from an order's first
 * venue call to the venue's answer): how full they were, and how long one venue submission held a slot (Little's
 * law: mean slots in use over submissions per second) against the venue's own time per submission
 * (placement_attempt_duration_seconds). With every slot in use, placement runs at the venue-bound
 * ceiling for that hold, whatever the CPU has left.
 */
function slotAccounting(
  capacity: number,
  loadRows: TimelineRow[],
  delta: (metric: string) => number,
  loadSeconds: number,
) {
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const meanInFlight = mean(loadRows.map((row) => row.at_venue));
  // The runtime's handlers (2 x the venue slots): those not at the venue are a few leased ahead of a
  // slot, the rest recording the outcome (the final MongoDB write, Redis). When they fill every handler,
  // the reading stops: the store, not the venue, sets the pace.
  const meanHandlers = mean(loadRows.map((row) => row.in_flight));
  const submissions = delta("placement_attempt_duration_seconds_count");
  const submissionsPerS = submissions / loadSeconds;
  return {
    capacity,
    mean_in_flight: meanInFlight,
    handler_capacity: placementHandlers(capacity),
    mean_handlers: meanHandlers,
    submissions_per_s: submissionsPerS,
    hold_ms: (meanInFlight / submissionsPerS) * 1000,
    venue_ms: (delta("placement_attempt_duration_seconds_sum") / submissions) * 1000,
    recording_ms: (Math.max(0, meanHandlers - meanInFlight) / submissionsPerS) * 1000,
  };
}

async function phaseB(servers: Servers, cleanup: Cleanup) {
  const env = isolatedEnv(servers, overrides);
  const venue = await spawnVenue(env, VENUE, cleanup);
  const serviceEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const spawn = async (kind: "api" | "actors", name: string): Promise<ServiceProcess> => {
    const service = await spawnService(kind, serviceEnv, { name });
    cleanup.add(() => service.process.kill());
    return service;
  };
  const [api, ...actors] = await Promise.all([
    spawn("api", "api"),
    spawn("actors", "actors-1"),
    spawn("actors", "actors-2"),
  ]);
  const all = [api!, ...actors];
  const mongo = mongoClient(env);
  cleanup.add(() => mongo.client.close());
  const exited: string[] = [];
  for (const service of [...all, venue]) {
    void service.process.exited.then((code) => exited.push(`${service.process.name} exited with ${code}`));
  }
  const alive = () => {
    if (exited.length > 0)
      throw new Error(`${exited.join("; ")}\n${all.map((s) => s.process.logs.slice(-3000)).join("\n")}`);
  };

  const snapshot = async (): Promise<Snapshot> => {
    const [apiSamples, ...actorSamples] = await Promise.all(all.map(scrape));
    return { api: apiSamples!, actors: actorSamples };
  };
  const actorsTotal = (s: Snapshot, name: string, labels: Record<string, string> = {}) =>
    s.actors.reduce((sum, samples) => sum + total(samples, name, labels), 0);
  const everyProcess = (s: Snapshot) => [...s.api, ...s.actors.flat()];
  const placedIn = (s: Snapshot) => actorsTotal(s, "placement_outcomes_total", { outcome: "placed" });
  const unfinished = async (filter: Record<string, unknown>) =>
    (await mongo.orders.countDocuments({ status: "accepted", ...filter })) +
    (await mongo.orders.countDocuments({ status: "placing", ...filter }));

  // The warm-up, as each intake run of phase A has one: the same load for --warmup-s, then its
  // orders drained, so that the measured load meets warm processes, pools and caches and starts from
  // an empty backlog (measured: the first 5 s of the load placed 642 orders/s warm, 546 cold).
  const authorizations = await clientAuthorizations(serviceEnv, settings.clients, "bench");
  console.log(`phase B warm-up: ${settings.clients} clients for ${settings.warmupS} s, then its drain`);
  const warmup = await runLoad(api!.baseUrl, settings.clients, settings.warmupS, authorizations);
  await waitFor(async () => (await unfinished({})) === 0, {
    timeoutMs: settings.drainTimeoutS * 1000,
    intervalMs: 500,
    message: "the warm-up's orders final",
  });
  alive();
  const placedInWarmup = await mongo.orders.countDocuments({ status: "placed" });
  const finalIn = (s: Snapshot) =>
    placedIn(s) + actorsTotal(s, "placement_outcomes_total", { outcome: "rejected" });
  const acceptedIn = (s: Snapshot) => total(s.api, "orders_accepted_total");

  const cpu = cpuMeter({
    api: () => processCpuMs(api!.process.pid)[0],
    actors: () => actors.reduce((sum, a) => sum + processCpuMs(a.process.pid)[0], 0),
    venue: () => processCpuMs(venue.process.pid)[0],
    store: () => storeCpuMs(servers),
    redis: () => serverCpuMs(servers.redis.port),
  });
  await resetStatementStatistics(servers);
  const before = await snapshot();
  const timeline: TimelineRow[] = [];
  const startedAt = performance.now();
  let phase: TimelineRow["phase"] = "load";
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await Bun.sleep(SAMPLE_INTERVAL_MS);
      if (!sampling) break;
      try {
        const s = await snapshot();
        const row: TimelineRow = {
          t_s: Math.round((performance.now() - startedAt) / 100) / 10,
          phase,
          accepted: acceptedIn(s) - acceptedIn(before),
          placed: placedIn(s) - placedIn(before),
          retries:
            actorsTotal(s, "placement_outcomes_total", { outcome: "retry" }) -
            actorsTotal(before, "placement_outcomes_total", { outcome: "retry" }),
          // Every actor process exports the same stream gauges: one process's values.
          backlog:
            total(s.actors[0]!, "placement_stream_lag_entries") +
            total(s.actors[0]!, "placement_stream_pending_entries"),
          in_flight: actorsTotal(s, "actor_in_flight_messages"),
          at_venue: actorsTotal(s, "placement_venue_in_flight"),
        };
        const previous = timeline.at(-1);
        timeline.push(row);
        {
          const rate = (key: "accepted" | "placed") =>
            previous ? (row[key] - previous[key]) / (row.t_s - previous.t_s) : Number.NaN;
          console.log(
            `  t=${fmt(row.t_s, 0).padStart(4)} s ${row.phase.padEnd(5)}  accepted ${row.accepted} (${fmt(rate("accepted"), 0)}/s)  ` +
              `placed ${row.placed} (${fmt(rate("placed"), 0)}/s)  retries ${row.retries}  backlog ${row.backlog}  in flight ${row.in_flight} (${row.at_venue} at the venue)`,
          );
        }
      } catch (error) {
        console.log(`  sampler: ${(error as Error).message}`);
      }
    }
  })();

  try {
    // The load.
    console.log(
      `phase B: ${settings.clients} clients for ${settings.durationS} s on api + 2 actors (default settings), ` +
        `venue ${VENUE.latencyMs} ms / ${VENUE.failureRate * 100}% failures`,
    );
    const main = await runLoad(api!.baseUrl, settings.clients, settings.durationS, authorizations);
    const loadEndedAt = performance.now();
    const cutoff = new Date();
    alive();
    const atLoadEnd = await snapshot();
    const placedDuringLoad = placedIn(atLoadEnd) - placedIn(before);
    const acceptedDuringLoad = acceptedIn(atLoadEnd) - acceptedIn(before);
    const slots = slotAccounting(
      loadConfig(serviceEnv).ACTOR_CONCURRENCY * actors.length,
      timeline.filter((row) => row.phase === "load"),
      (name) => actorsTotal(atLoadEnd, name) - actorsTotal(before, name),
      main.seconds,
    );

    // The drain, with a light probe load.
    phase = "drain";
    const probe = await startLoad(api!.baseUrl, settings.probeClients, 0, authorizations);
    let drainError: string | undefined;
    let polls = 0;
    try {
      await waitFor(
        async () => {
          if (exited.length > 0) return true;
          // MongoDB is asked when the counters say it may be done (a count reads the backlog), and
          // every 60 s in case they do not.
          const s = await snapshot();
          if (finalIn(s) - finalIn(before) < acceptedDuringLoad && ++polls % 60 !== 0) return false;
          return (await unfinished({ created_at: { $lt: cutoff } })) === 0;
        },
        { timeoutMs: settings.drainTimeoutS * 1000, intervalMs: 1_000, message: "the backlog drained" },
      );
    } catch (error) {
      drainError = (error as Error).message;
    }
    alive();
    const drainSeconds = (performance.now() - loadEndedAt) / 1000;
    probe.stop();
    const probeResult = await probe.result();
    alive();

    // The probe's own orders, then the final read-outs.
    phase = "tail";
    if (drainError === undefined) {
      await waitFor(async () => (await unfinished({})) === 0, {
        timeoutMs: 120_000,
        intervalMs: 500,
        message: "the probe's orders final",
      }).catch((error) => {
        drainError = (error as Error).message;
      });
    }
    const after = await snapshot();
    const cpuMs = cpu.read({ load_generator: main.cpuMs + probeResult.cpuMs });
    const storeStatements = await statementCosts(servers, placedIn(after) - placedIn(before));
    sampling = false;
    await sampler;

    // Correctness: every 201 final in MongoDB, the venue holding exactly what MongoDB placed.
    const stored = new Map<string, string>();
    for await (const doc of mongo.orders.find({}, { projection: { status: 1 } }))
      stored.set(doc._id, doc.status);
    const accepted = [...warmup.ids, ...main.ids, ...probeResult.ids];
    const missing = accepted.filter((id) => !stored.has(id));
    const notFinal = accepted.filter((id) => {
      const status = stored.get(id);
      return status !== undefined && status !== "placed" && status !== "rejected";
    });
    const acceptedSet = new Set(accepted);
    const storedWithout201 = [...stored.keys()].filter((id) => !acceptedSet.has(id)).length;
    const statusCounts: Record<string, number> = {};
    for (const status of stored.values()) statusCounts[status] = (statusCounts[status] ?? 0) + 1;
    // The venue holds the warm-up's orders too; the per-order figures count the measured ones only.
    const placedInMongoAll = statusCounts.placed ?? 0;
    const placedInMongo = placedInMongoAll - placedInWarmup;
    const mainPlaced = main.ids.filter((id) => stored.get(id) === "placed").length;
    const venue_ = await venueStats(venue);
    const venueAgrees = venue_.orders === placedInMongoAll;
    const correctness = {
      accepted: accepted.length,
      statuses: statusCounts,
      missing: missing.length,
      not_final: notFinal.length,
      stored_without_201: storedWithout201,
      examples: [...missing, ...notFinal].slice(0, 10),
      venue: venue_,
      venue_orders_equal_placed: venueAgrees,
      ok: missing.length === 0 && notFinal.length === 0 && venueAgrees && drainError === undefined,
    };

    const mongoOps = subtract(
      byLabel(everyProcess(after), "orders_mongo_operations_total", "command"),
      byLabel(everyProcess(before), "orders_mongo_operations_total", "command"),
    );
    const durable = subtract(
      byLabel(everyProcess(after), "orders_mongo_durable_writes_total", "kind"),
      byLabel(everyProcess(before), "orders_mongo_durable_writes_total", "kind"),
    );
    const sum = (record: Record<string, number>) => Object.values(record).reduce((a, b) => a + b, 0);
    const perPlaced = (record: Record<string, number>) =>
      Object.fromEntries(Object.entries(record).map(([k, v]) => [k, v / placedInMongo]));
    const watched: [string, string][] = [
      ["api", "orders_internal_errors_total"],
      ["api", "orders_dispatch_failures_total"],
      ["actors", "placement_final_write_mismatches_total"],
      ["actors", "placement_venue_duplicates_total"],
      ["actors", "actor_restarts_total"],
      ["actors", "placement_reclaimed_entries_total"],
      ["actors", "placement_reclaimed_missing_payload_total"],
      ["actors", "placement_sweeper_redispatched_total"],
      ["actors", "placement_dead_lettered_total"],
      ["actors", "exchange_breaker_transitions_total"],
      ["actors", "placement_retries_released_total"],
    ];
    const counters = Object.fromEntries(
      watched.map(([where, name]) => {
        const pick = (s: Snapshot) => (where === "api" ? total(s.api, name) : actorsTotal(s, name));
        return [name, pick(after) - pick(before)];
      }),
    );
    const outcomes = subtract(
      byLabel(everyProcess(after), "placement_outcomes_total", "outcome"),
      byLabel(everyProcess(before), "placement_outcomes_total", "outcome"),
    );

    const mainLatency = summariseLatency(main);
    const drainLatency = summariseLatency(probeResult);
    const non201: Record<string, number> = {};
    for (const summary of [mainLatency, drainLatency]) {
      for (const [status, count] of Object.entries(summary.non201))
        non201[status] = (non201[status] ?? 0) + count;
    }
    const sustained = mainPlaced / (main.seconds + drainSeconds);
    return {
      load_seconds: main.seconds,
      drain_seconds: drainSeconds,
      drain_error: drainError ?? null,
      accepted_per_s: mainLatency.ok / main.seconds,
      accepted_during_load: acceptedDuringLoad,
      placed_during_load: placedDuringLoad,
      placed_per_s_during_load: placedDuringLoad / main.seconds,
      placed_per_s_sustained: sustained,
      slots,
      intake_during_load: mainLatency,
      intake_while_draining: drainLatency,
      non201,
      placed_in_mongo: placedInMongo,
      warmup: { seconds: warmup.seconds, accepted: warmup.ids.length, placed: placedInWarmup },
      mongo_operations: mongoOps,
      mongo_operations_per_placed: sum(mongoOps) / placedInMongo,
      mongo_operations_per_placed_by_command: perPlaced(mongoOps),
      durable_writes: durable,
      durable_writes_per_placed: sum(durable) / placedInMongo,
      durable_writes_per_placed_by_kind: perPlaced(durable),
      venue_duplicates: venue_.duplicates,
      outcomes,
      counters,
      correctness,
      cpu_ms: cpuMs,
      store_statements: storeStatements,
      accepted_per_second: main.perSecond,
      timeline,
      processes: all.map((s) => ({ name: s.process.name, pid: s.process.pid })),
      stop: async () => {
        const codes: Record<string, number | "killed"> = {};
        const stops = all.map(async (s) => {
          codes[s.process.name] = await stopProcess(s.process);
        });
        await Promise.all(stops);
        codes.venue = await stopProcess(venue.process, 5_000);
        return codes;
      },
      logs: () => [...all, venue].flatMap((s) => logProblems(s.process.name, s.process)),
    };
  } finally {
    sampling = false;
    await sampler;
  }
}

// ---------------------------------------------------------------------------------------------------

const verdict = (met: boolean) => (met ? "met" : "NOT MET");

/**
 * The venue-bound ceiling: every slot held for exactly the venue's latency, a tenth of the submissions
 * failing and coming back later (a retry looks the order up first, which is immediate). When the
 * ratio's target in orders/s lies above it, no store or CPU saving can meet it with these settings.
 */
function slotRows(
  slots: ReturnType<typeof slotAccounting>,
  placedPerS: number,
  targetPerS: number,
): string[][] {
  const perSubmission = 1 - VENUE.failureRate;
  const ceiling = (slots.capacity / (VENUE.latencyMs / 1000)) * perSubmission;
  return [
    [
      "venue-bound ceiling",
      `${fmt(ceiling, 0)}/s (${slots.capacity} slots / ${VENUE.latencyMs} ms x ${perSubmission} placed per submission)`,
      "",
      "",
    ],
    [
      "  placed/s during the load / ceiling",
      `${fmt(placedPerS / ceiling, 2)}x; slots in use ${fmt((100 * slots.mean_in_flight) / slots.capacity, 1)}%`,
      "",
      "",
    ],
    [
      "  slot held per venue submission",
      `${fmt(slots.hold_ms, 0)} ms: venue ${fmt(slots.venue_ms, 0)} ms + ${fmt(slots.hold_ms - slots.venue_ms, 0)} ms (the event loops, the transport, a retry's look-up)`,
      "",
      "",
    ],
    [
      "  handlers in use (venue + leased ahead + recording)",
      `${fmt((100 * slots.mean_handlers) / slots.handler_capacity, 1)}% of ${slots.handler_capacity}; past the venue slots ${fmt(slots.recording_ms, 0)} ms per submission (a lease read ahead; the final write, Redis)`,
      "",
      "",
    ],
    [
      "  the ratio's target in orders/s",
      `${fmt(targetPerS, 0)}/s${targetPerS > ceiling ? ": above the ceiling, out of reach with these settings" : ""}`,
      "",
      "",
    ],
  ];
}
const perOrder = (record: Record<string, number>) =>
  Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(", ");

async function main(): Promise<number> {
  const cleanup = new Cleanup();
  const loadBefore = loadavg();
  try {
    if (args["pg-stats"]) enableStatementStatistics();
    const servers = await startServers();
    cleanup.add(() => servers.stop());
    console.log(
      `bench:system  ${servers.mongo.kind} + redis-server  ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}  ` +
        `load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")}${smoke ? "  (smoke)" : ""}`,
    );
    if (Object.keys(overrides).length > 0) {
      console.log(`NOT the default settings: ${JSON.stringify(overrides)}`);
    }
    console.log(
      `phase A: ${settings.clients} clients, ${settings.floorS} s each after ${settings.warmupS} s of warm-up`,
    );
    const floorBefore = await intakeOnly(servers, "floor");
    const apiAlone = await intakeOnly(servers, "api (no actors)");
    const b = await phaseB(servers, cleanup);
    const exitCodes = await b.stop();
    const problems = b.logs();
    // The floor again after phase B: this machine's speed drifts by a quarter and more within minutes
    // (the venue's fixed work per order took 0.18-0.30 ms of CPU in back-to-back runs), so the ratio is
    // taken against the floor on both sides of phase B rather than against one measured minutes before.
    console.log("phase A again after phase B (the floor):");
    const floorAfter = await intakeOnly(servers, "floor after B");
    const floor = bracketedFloor(floorBefore, floorAfter);
    const placedOfFloor = b.placed_per_s_sustained / floor.accepted_per_s;

    const targets = {
      placed_of_floor: {
        value: placedOfFloor,
        target: TARGETS.placedOfFloor,
        met: placedOfFloor >= TARGETS.placedOfFloor,
      },
      drain_p99_ms: {
        value: b.intake_while_draining.p99_ms,
        target: TARGETS.drainP99Ms,
        met: b.intake_while_draining.p99_ms <= TARGETS.drainP99Ms,
      },
      non201: {
        value: Object.values(b.non201).reduce((a, c) => a + c, 0),
        target: TARGETS.non201,
        met: Object.keys(b.non201).length === 0,
      },
      durable_writes_per_placed: {
        value: b.durable_writes_per_placed,
        target: TARGETS.durableWritesPerPlaced,
        met: b.durable_writes_per_placed <= TARGETS.durableWritesPerPlaced,
      },
    };

    console.log("");
    console.log(
      table([
        [
          "phase A (intake only)",
          "orders/s",
          "p50 ms",
          "p99 ms",
          "non-201",
          "cpu ms/order",
          "store cpu ms/order",
        ],
        ...[floorBefore, apiAlone, floorAfter].map((r) => [
          r.target,
          fmt(r.accepted_per_s, 0),
          fmt(r.latency.p50_ms, 1),
          fmt(r.latency.p99_ms, 1),
          String(Object.values(r.latency.non201).reduce((a, c) => a + c, 0)),
          fmt(r.cpu_ms_per_order, 3),
          fmt(r.store_cpu_ms_per_order, 3),
        ]),
      ]),
    );
    console.log("");
    const c = b.correctness;
    console.log(
      table([
        ["phase B (api + 2 actors)", "value", "target", ""],
        ["accepted/s (load phase)", fmt(b.accepted_per_s, 0), "", ""],
        ["placed/s during the load", fmt(b.placed_per_s_during_load, 0), "", ""],
        ["placed/s sustained (load + drain)", fmt(b.placed_per_s_sustained, 0), "", ""],
        [
          "placed/s sustained / floor",
          `${fmt(placedOfFloor, 2)}x (floor ${fmt(floor.accepted_per_s, 0)}/s: ${fmt(floorBefore.accepted_per_s, 0)} before, ${fmt(floorAfter.accepted_per_s, 0)} after)`,
          `>= ${TARGETS.placedOfFloor}x`,
          verdict(targets.placed_of_floor.met),
        ],
        ...slotRows(b.slots, b.placed_per_s_during_load, TARGETS.placedOfFloor * floor.accepted_per_s),
        [
          "drain time after the load stopped",
          `${fmt(b.drain_seconds, 1)} s${b.drain_error ? " (TIMED OUT)" : ""}`,
          "",
          "",
        ],
        [
          "intake p50 / p99 during the load",
          `${fmt(b.intake_during_load.p50_ms, 1)} / ${fmt(b.intake_during_load.p99_ms, 1)} ms`,
          "",
          "",
        ],
        [
          `intake p50 / p99 while draining (${settings.probeClients} clients)`,
          `${fmt(b.intake_while_draining.p50_ms, 1)} / ${fmt(b.intake_while_draining.p99_ms, 1)} ms`,
          `p99 <= ${TARGETS.drainP99Ms} ms`,
          verdict(targets.drain_p99_ms.met),
        ],
        [
          "non-201 (by status)",
          Object.keys(b.non201).length === 0 ? "0" : JSON.stringify(b.non201),
          "0",
          verdict(targets.non201.met),
        ],
        ["MongoDB operations per placed order", fmt(b.mongo_operations_per_placed, 2), "", ""],
        ["  by command", perOrder(b.mongo_operations_per_placed_by_command), "", ""],
        [
          "durable writes per placed order",
          fmt(b.durable_writes_per_placed, 2),
          `<= ${TARGETS.durableWritesPerPlaced}`,
          verdict(targets.durable_writes_per_placed.met),
        ],
        ["  by kind", perOrder(b.durable_writes_per_placed_by_kind), "", ""],
        [
          "venue duplicates",
          `${b.venue_duplicates} (actors counted ${b.counters.placement_venue_duplicates_total})`,
          "",
          "",
        ],
        [
          "correctness",
          c.ok
            ? `ok: ${c.accepted} accepted, all final; venue orders ${c.venue.orders} = placed`
            : `FAILED: ${c.missing} missing, ${c.not_final} not final, venue orders ${c.venue.orders} vs placed ${b.placed_in_mongo + b.warmup.placed}`,
          "none lost, none twice",
          c.ok ? "ok" : "FAILED",
        ],
      ]),
    );
    console.log("");
    console.log(
      `phase B detail: ${b.accepted_during_load} accepted and ${b.placed_during_load} placed during ${fmt(b.load_seconds, 1)} s of load; ` +
        `venue ${c.venue.submissions} submissions, ${c.venue.failures} failures, ${c.venue.duplicates} duplicates; ` +
        `outcomes ${JSON.stringify(b.outcomes)}; statuses in MongoDB ${JSON.stringify(c.statuses)}; ` +
        `stored without a 201: ${c.stored_without_201}`,
    );
    console.log(`counters: ${JSON.stringify(b.counters)}`);
    const processCpuMs = Object.entries(b.cpu_ms).filter(([name]) => name !== "machine_busy_percent");
    const cpuPerPlaced = processCpuMs
      .map(([name, ms]) => `${name} ${fmt(ms / b.placed_in_mongo, 2)}`)
      .join(", ");
    console.log(
      `cpu over phase B: ms per placed order ${cpuPerPlaced}; machine busy ${b.cpu_ms.machine_busy_percent}%`,
    );
    // With both phases keeping every core busy, placed/s over the floor comes to the ratio of their
    // CPU per order: a measured ratio far from it says the machine was busier in one phase than in the other.
    const floorCpu = floor.cpu_ms_per_order;
    const systemCpu = processCpuMs.reduce((total, [, ms]) => total + ms, 0) / b.placed_in_mongo;
    console.log(
      `CPU-bound ratio: the floor's ${fmt(floorCpu, 2)} ms per order (server, store, load generator) / ` +
        `the system's ${fmt(systemCpu, 2)} ms per placed order = ` +
        `${fmt(floorCpu / systemCpu, 2)}x (measured: ${fmt(placedOfFloor, 2)}x)`,
    );
    if (b.store_statements.length > 0) console.log(statementTable(b.store_statements));
    console.log(`exit codes on SIGTERM: ${JSON.stringify(exitCodes)}`);
    if (b.drain_error) console.log(`drain: ${b.drain_error}`);
    if (!c.ok && c.examples.length > 0) console.log(`e.g. ${c.examples.join(", ")}`);
    if (problems.length > 0) {
      console.log("warnings and errors in the process logs:");
      for (const p of problems.slice(0, 15)) console.log(`  ${p.process} ${p.level} x${p.count}: ${p.msg}`);
    } else {
      console.log("no warnings or errors in the process logs");
    }
    const missed = Object.entries(targets)
      .filter(([, t]) => !t.met)
      .map(([name]) => name);
    console.log(missed.length === 0 ? "all targets met" : `targets not met: ${missed.join(", ")}`);

    const { stop: _stop, logs: _logs, ...phaseBReport } = b;
    writeJsonReport(jsonPath, {
      benchmark: "system",
      date: new Date().toISOString(),
      command: `bun bench/system.ts ${process.argv.slice(2).join(" ")}`.trim(),
      machine: {
        cpus: cpus().length,
        cpu_model: cpus()[0]?.model,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        bun: Bun.version,
        load_average_before: loadBefore,
        load_average_after: loadavg(),
      },
      servers: { mongo: servers.mongo.kind, redis: servers.redis.kind },
      settings: { ...settings, venue: VENUE, overrides },
      targets,
      phase_a: { floor, floor_before: floorBefore, floor_after: floorAfter, api_alone: apiAlone },
      phase_b: { ...phaseBReport, placed_of_floor: placedOfFloor },
      exit_codes: exitCodes,
      log_problems: problems,
    });
    console.log(`\nwrote ${jsonPath}`);
    return c.ok ? 0 : 3;
  } finally {
    await cleanup.run();
  }
}

if (args["load-child"]) {
  await runLoadChild();
  process.exit(0);
}
exitUnlessPositive(
  "bench:system",
  Object.entries(settings).filter((entry): entry is [string, number] => typeof entry[1] === "number"),
);
runBenchmark("bench:system", main);
