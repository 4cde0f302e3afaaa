/**
 * Placement throughput on a Redis Cluster by partitions and actor processes (issue #11 item 7).
 *
 *   bun bench/scale.ts            (about 6-8 minutes on 2 cores; SCALE_QUICK=1: about 2 minutes)
 *
 * A local Redis Cluster (3 masters + 3 replicas, startRedisCluster()), the simulated venue as its own
 * process (`exchange`, latency SCALE_VENUE_LATENCY_MS = 1 ms, failure rate 0: it must not be the
 * limit; its own ceiling is measured first and printed), and for each store, PLACEMENT_PARTITIONS in
 * SCALE_PARTITIONS (1,2,4) and actor processes in SCALE_PROCESSES (1,2,3):
 *
 *   1. a backlog of orders is dispatched (the state key + XADD of RedisPlacementState.dispatch, the
 *      intake's own script) onto the partitions' streams: the same number for every run of a store
 *      (equal conditions: on FerretDB the sweeper's and the monitor's scans grow with the orders
 *      waiting), enough to outlast the run at the highest rate this machine reached (PEAK_RATE);
 *   2. the actor processes start; after SCALE_WARMUP_S (3 s) placed orders are counted over a steady
 *      window of SCALE_WINDOW_S (10 s) while the backlog is still there (a run whose backlog ran out
 *      is repeated once with a larger one, and flagged if it runs out again);
 *   3. the processes are killed, the cluster flushed, the database dropped.
 *
 * Stores:
 * - memory: bench/memory-actors.ts processes (the real actor runtime, placement behaviour, breaker,
 *   HTTP venue client and retry mover over an in-memory order store; the service has no in-memory
 *   store, this is bench/placement.ts's): the actors and Redis alone. Placed = the venue's count of
 *   distinct orders (/stats; failure rate 0, so every order reaching it is placed).
 * - mongo: real `actors` processes (spawnService("actors")) on the harness's MongoDB-wire store
 *   (FerretDB on PostgreSQL by default), orders pre-loaded the way the API writes them (insert, then
 *   dispatch). Placed = the sum of placement_outcomes_total{outcome="placed"} over the processes'
 *   /metrics (counted after the final MongoDB write).
 * Every other setting is the default (ACTOR_CONCURRENCY 256, ...), except the sweep grace: pre-loaded
 * orders are not re-dispatched by the sweeper during a run.
 *
 * Efficiency vs linear = placed/s / (processes x placed/s of 1 process at the same partitions).
 * CPU per group (actors, Redis nodes, venue, store) over the window is printed in % of one core: on a
 * machine with 2 cores, 2 or more actor processes share the CPU with Redis, the venue and the store,
 * so no process count can scale linearly here. On a shared machine other work steals CPU too: each run
 * first waits (a little) for the machine to be quiet, and prints `other` (the machine's busy time not
 * spent by the benchmark's processes) and placed/core-s (placed per CPU-second of the benchmark's own
 * processes, which other load changes much less than placed/s).
 *
 * Knobs (environment): SCALE_QUICK=1 (partitions 1,2 x processes 1,2, warm-up 2 s, window 4 s),
 * SCALE_STORES=memory,mongo, SCALE_PARTITIONS=1,2,4, SCALE_PROCESSES=1,2,3, SCALE_WARMUP_S,
 * SCALE_WINDOW_S, SCALE_BACKLOG (orders per run, both stores; default: backlogFor()),
 * SCALE_VENUE_LATENCY_MS, SCALE_QUIET_BUDGET_S (seconds the runs may wait for a quiet machine in all;
 * default 120, 0: never wait), SCALE_JSON (default reports/bench-scale.json).
 */
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { RedisPlacementState } from "../src/adapters/placement-state.ts";
import { awaitConnection, closeRedis, createRedisConnection } from "../src/adapters/redis.ts";
import { createRedisKeys } from "../src/adapters/redis-keys.ts";
import { uuidV7 } from "../src/domain/ids.ts";
import { partitionOf } from "../src/domain/order.ts";
import type { DispatchedOrder } from "../src/domain/ports.ts";
import { type Env, preloadOrders, spawnActors, spawnVenue, venueStats } from "../test/support/placement.ts";
import type { OwnedProcess } from "../test/support/servers/child-process.ts";
import { redisCommand } from "../test/support/servers/redis.ts";
import { type RedisCluster, startRedisCluster } from "../test/support/servers/redis-cluster.ts";
import {
  Cleanup,
  isolatedEnv,
  mongoFor,
  ROOT,
  type Servers,
  type ServiceProcess,
  startServers,
} from "../test/support/system.ts";
import { resetVenue } from "../test/support/venue-admin.ts";
import { spawnMemoryActors } from "./memory-actors.ts";
import { runBenchmark, writeJsonReport } from "./output.ts";
import { cpuMeter, machineCpuMs, processCpuMs, scrape, storeCpuMs, table, total } from "./process-stats.ts";

type Store = "memory" | "mongo";

const quick = process.env.SCALE_QUICK === "1";
const list = (value: string | undefined, fallback: string) =>
  (value || fallback)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
const settings = {
  stores: list(process.env.SCALE_STORES, "memory,mongo") as Store[],
  partitions: list(process.env.SCALE_PARTITIONS, quick ? "1,2" : "1,2,4").map(Number),
  processes: list(process.env.SCALE_PROCESSES, quick ? "1,2" : "1,2,3").map(Number),
  warmupS: Number(process.env.SCALE_WARMUP_S || (quick ? 2 : 3)),
  windowS: Number(process.env.SCALE_WINDOW_S || (quick ? 4 : 10)),
  backlog: process.env.SCALE_BACKLOG ? Number(process.env.SCALE_BACKLOG) : undefined,
  venueLatencyMs: Number(process.env.SCALE_VENUE_LATENCY_MS || 1),
  venueCeilingS: quick ? 3 : 5,
  quietBudgetS: Number(process.env.SCALE_QUIET_BUDGET_S || (quick ? 30 : 120)),
  json: resolve(ROOT, process.env.SCALE_JSON || "reports/bench-scale.json"),
};
for (const store of settings.stores) {
  if (store !== "memory" && store !== "mongo") throw new Error(`SCALE_STORES: unknown store ${store}`);
}
for (const n of [...settings.partitions, ...settings.processes]) {
  if (!Number.isInteger(n) || n < 1) throw new Error(`SCALE_PARTITIONS / SCALE_PROCESSES: not a count: ${n}`);
}

/**
 * Above the highest placed/s measured here for each store (2 cores: 6,500/s in memory, 460/s on
 * FerretDB), to size the backlog; a run that still runs dry is repeated once with 2.5 times as many.
 */
const PEAK_RATE: Record<Store, number> = { memory: 7_000, mongo: 550 };
/** Placed count at or above this share of the backlog: it may have run dry inside the window. */
const DRY = 0.97;
/**
 * A machine busier than this (% of all cores) while none of this run's processes runs yet is busy with
 * someone else's work: the run waits for it to calm down (at most 30 s each, SCALE_QUIET_BUDGET_S in all).
 */
const QUIET_BUSY_PERCENT = 25;
/** A venue process above this share of one core may be what limits a run: flagged. */
const VENUE_BUSY = 0.85;

interface Run {
  store: Store;
  partitions: number;
  processes: number;
  backlog: number;
  placedPerS: number;
  windowS: number;
  /** The backlog ran (nearly) dry before the window ended, even after a retry with a larger one. */
  ranDry: boolean;
  /**
   * CPU over the window, % of one core per group (`other`: the rest of the machine's busy time, other
   * processes included), and `machine`: the machine's busy share, % of all cores.
   */
  cpuPercent: Record<string, number>;
  /** mongo: orders `placed` in MongoDB after the processes were stopped (>= the counters' sum). */
  mongoPlacedAtEnd?: number;
  placedCounted: number;
  /** The machine's busy share (% of all cores) just before the run, and how long the run waited for it. */
  busyBefore: number;
  waitedForQuietS: number;
  /** Placed orders per CPU-second of this benchmark's processes (other load does not change it much). */
  placedPerCoreSecond: number;
  /** Seconds to dispatch the backlog, and to start the processes. */
  seedS: number;
  spawnS: number;
}

interface VenueCeiling {
  clients: number;
  seconds: number;
  ordersPerS: number;
  venueCpuMsPerOrder: number;
  perCoreCeiling: number;
  machineBusyPercent: number;
}

runBenchmark("bench/scale.ts", main);

async function main(): Promise<number> {
  const cleanup = new Cleanup();
  const runs: Run[] = [];
  const loadBefore = loadavg();
  let venueCeiling: VenueCeiling | undefined;
  try {
    console.log(
      `scale benchmark: ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load ${fmtLoad(loadBefore)}; ` +
        `stores ${settings.stores.join(",")}, partitions ${settings.partitions.join(",")}, ` +
        `processes ${settings.processes.join(",")}, warm-up ${settings.warmupS} s, window ${settings.windowS} s`,
    );
    if (cpus().length < Math.max(...settings.processes)) {
      console.log(
        `note: ${cpus().length} CPUs: actor processes share them with the Redis nodes, the venue and the ` +
          `store, so ${cpus().length} or more processes cannot scale linearly on CPU here`,
      );
    }
    const [servers, cluster] = await Promise.all([startServers(), startRedisCluster()]);
    cleanup.add(() => servers.stop());
    cleanup.add(() => cluster.stop());
    const redisPids = await Promise.all(cluster.nodes.map((node) => serverPid(portOf(node))));
    console.log(`Redis Cluster: ${cluster.nodes.length} nodes; MongoDB-wire store: ${servers.mongo.kind}`);

    const venue = await spawnVenue(
      isolatedEnv(servers),
      { failureRate: 0, latencyMs: settings.venueLatencyMs },
      cleanup,
    );
    venueCeiling = await measureVenueCeiling(venue, settings.venueCeilingS);
    console.log(
      `venue (latency ${settings.venueLatencyMs} ms, failure 0): ${fmt(venueCeiling.ordersPerS, 0)} orders/s ` +
        `with ${venueCeiling.clients} clients from this process (machine ${venueCeiling.machineBusyPercent}% busy); ` +
        `${fmt(venueCeiling.venueCpuMsPerOrder, 3)} CPU ms per order -> ceiling ~${fmt(venueCeiling.perCoreCeiling, 0)} ` +
        "orders/s on one core",
    );

    for (const store of settings.stores) {
      for (const partitions of settings.partitions) {
        for (const processes of settings.processes) {
          let backlog = settings.backlog ?? backlogFor(store, Math.max(...settings.processes));
          const setup = { servers, cluster, venue, redisPids, store, partitions, processes };
          let run = await measure({ ...setup, backlog });
          if (run.ranDry && settings.backlog === undefined) {
            backlog = Math.ceil(backlog * 2.5);
            console.log(`  backlog ran dry; again with ${backlog} orders`);
            run = await measure({ ...setup, backlog });
          }
          runs.push(run);
          console.log(
            `  ${store} partitions ${partitions} x ${processes} process(es): ${fmt(run.placedPerS, 0)} placed/s ` +
              `over ${fmt(run.windowS)} s (backlog ${run.backlog} dispatched in ${fmt(run.seedS)} s${run.ranDry ? ", RAN DRY" : ""}; ` +
              `machine ${run.busyBefore}% busy before${run.waitedForQuietS > 0.5 ? ` after waiting ${fmt(run.waitedForQuietS)} s` : ""}); cpu % of a core: ` +
              Object.entries(run.cpuPercent)
                .map(([k, v]) => `${k} ${v}`)
                .join(", "),
          );
        }
      }
    }
  } finally {
    await cleanup.run();
  }

  const efficiency = (run: Run) => {
    const single = runs.find(
      (r) => r.store === run.store && r.partitions === run.partitions && r.processes === 1,
    );
    return single ? run.placedPerS / (run.processes * single.placedPerS) : Number.NaN;
  };
  console.log("");
  console.log(
    `${cpus().length} CPUs: more than ${cpus().length} actor processes cannot scale linearly on CPU, and with ` +
      "Redis, the venue and the store on the same cores, neither can 2.",
  );
  for (const store of settings.stores) {
    console.log(
      `\n${store === "memory" ? "(a) in-memory order store (actors + Redis Cluster)" : `(b) embedded store (${store}: FerretDB on PostgreSQL unless TEST_MONGO_URL / mongod)`}: ` +
        "placed/s (efficiency vs linear)",
    );
    const rows = [["partitions", ...settings.processes.map((n) => `${n} process${n === 1 ? "" : "es"}`)]];
    for (const partitions of settings.partitions) {
      rows.push([
        String(partitions),
        ...settings.processes.map((processes) => {
          const run = runs.find(
            (r) => r.store === store && r.partitions === partitions && r.processes === processes,
          );
          if (!run) return "-";
          const eff = efficiency(run);
          return `${fmt(run.placedPerS, 0)} (${fmt(eff, 2)}x)${run.ranDry ? " dry" : ""}`;
        }),
      ]);
    }
    console.log(table(rows));
  }
  console.log(
    "\nCPU over each window, % of one core (other: the rest of the machine's busy time; machine: % of all cores):",
  );
  const groups = ["actors", "redis", "venue", "store", "bench", "other", "machine"].filter((g) =>
    runs.some((r) => r.cpuPercent[g] !== undefined),
  );
  console.log(
    table([
      [
        "store",
        "partitions",
        "processes",
        "placed/s",
        "efficiency",
        "placed/core-s",
        "busy before",
        ...groups,
      ],
      ...runs.map((r) => [
        r.store,
        String(r.partitions),
        String(r.processes),
        fmt(r.placedPerS, 0),
        `${fmt(efficiency(r), 2)}x`,
        fmt(r.placedPerCoreSecond, 0),
        `${r.busyBefore}%`,
        ...groups.map((g) => (r.cpuPercent[g] === undefined ? "-" : String(r.cpuPercent[g]))),
      ]),
    ]),
  );
  const venueFlags = runs.filter((r) => (r.cpuPercent.venue ?? 0) > VENUE_BUSY * 100);
  console.log(
    venueFlags.length === 0
      ? `venue below ${VENUE_BUSY * 100}% of a core in every window: it was not the limit`
      : `venue above ${VENUE_BUSY * 100}% of a core in ${venueFlags.length} window(s): it may have been the limit there`,
  );
  writeJsonReport(settings.json, {
    benchmark: "scale",
    at: new Date().toISOString(),
    cpus: cpus().length,
    loadavg: { before: loadBefore, after: loadavg() },
    settings,
    venueCeiling,
    runs: runs.map((r) => ({ ...r, efficiency: efficiency(r) })),
  });
  console.log(`wrote ${settings.json}`);
  return 0;
}

/** Orders enough for PEAK_RATE over the start of the processes, the warm-up and the window, and some. */
function backlogFor(store: Store, processes: number): number {
  const seconds = 1 + processes + settings.warmupS + settings.windowS;
  return Math.ceil((PEAK_RATE[store] * seconds * 1.3) / 1_000) * 1_000;
}

async function measure(options: {
  servers: Servers;
  cluster: RedisCluster;
  venue: ServiceProcess;
  redisPids: number[];
  store: Store;
  partitions: number;
  processes: number;
  backlog: number;
}): Promise<Run> {
  const { servers, cluster, venue, store, partitions, processes, backlog } = options;
  const env: Env = isolatedEnv(servers, {
    REDIS_CLUSTER_NODES: cluster.seeds,
    REDIS_URL: `redis://${cluster.nodes[0]}`,
    PLACEMENT_PARTITIONS: String(partitions),
    EXCHANGE_URL: venue.baseUrl,
    LOG_LEVEL: "warn",
    // The backlog is pre-loaded, not taken over by the sweeper during the run.
    DISPATCH_GRACE_MS: "3600000",
  });
  const local = new Cleanup();
  try {
    const quiet = await waitForQuiet();
    await resetVenue(venue);
    const seedStarted = performance.now();
    if (store === "memory") await dispatchOnly(env, backlog, partitions);
    else await preloadOrders(env, backlog, { dispatchGraceMs: 3_600_000, batch: 500 });
    const seedS = (performance.now() - seedStarted) / 1000;

    const spawnStarted = performance.now();
    const actors: { process: OwnedProcess; opsUrl?: string }[] = [];
    for (let i = 0; i < processes; i++) {
      actors.push(store === "memory" ? await spawnMemoryActors(env, local) : await spawnActors(env, local));
    }
    const spawnS = (performance.now() - spawnStarted) / 1000;
    const placed =
      store === "memory"
        ? async () => (await venueStats(venue)).orders
        : async () => {
            const all = await Promise.all(actors.map((a) => scrape({ opsUrl: a.opsUrl! })));
            return all.reduce(
              (sum, samples) => sum + total(samples, "placement_outcomes_total", { outcome: "placed" }),
              0,
            );
          };

    await Bun.sleep(settings.warmupS * 1000);
    const cpu = cpuMeter({
      actors: () => actors.reduce((sum, a) => sum + processCpuMs(a.process.pid)[0], 0),
      redis: () => options.redisPids.reduce((sum, pid) => sum + processCpuMs(pid)[0], 0),
      venue: () => processCpuMs(venue.process.pid)[0],
      ...(store === "mongo" ? { store: () => storeCpuMs(servers) } : {}),
      bench: () => {
        const usage = process.cpuUsage();
        return (usage.user + usage.system) / 1000;
      },
    });
    const from = { at: performance.now(), placed: await placed() };
    let to = from;
    const end = from.at + settings.windowS * 1000;
    while (performance.now() < end) {
      await Bun.sleep(Math.min(1_000, Math.max(0, end - performance.now())));
      to = { at: performance.now(), placed: await placed() };
      if (to.placed >= backlog * DRY) break;
    }
    const windowMs = to.at - from.at;
    const cpuMs = cpu.read();
    const cpuPercent: Record<string, number> = {};
    let ours = 0;
    const placedPerS = ((to.placed - from.placed) * 1000) / windowMs;
    for (const [group, ms] of Object.entries(cpuMs)) {
      if (group === "machine_busy_percent") continue;
      cpuPercent[group] = Math.round((1000 * ms) / windowMs) / 10;
      ours += cpuPercent[group];
    }
    // Everything else busy on the machine meanwhile (other processes, the kernel), in % of one core.
    const machine = cpuMs.machine_busy_percent ?? 0;
    cpuPercent.other = Math.max(0, Math.round(10 * (machine * cpus().length - ours)) / 10);
    cpuPercent.machine = machine;
    const run: Run = {
      store,
      partitions,
      processes,
      backlog,
      placedPerS,
      windowS: windowMs / 1000,
      ranDry: to.placed >= backlog * DRY || from.placed >= backlog * DRY,
      cpuPercent,
      placedCounted: to.placed,
      seedS,
      spawnS,
      busyBefore: quiet.busyPercent,
      waitedForQuietS: quiet.waitedS,
      placedPerCoreSecond: ours > 0 ? placedPerS / (ours / 100) : Number.NaN,
    };
    await local.run();
    if (store === "mongo") {
      const mongo = mongoFor(env);
      try {
        run.mongoPlacedAtEnd = await mongo.orders.countDocuments({ status: "placed" });
        await mongo.db.dropDatabase();
      } finally {
        await mongo.client.close();
      }
    }
    return run;
  } finally {
    await local.run();
    for (const master of await cluster.masters().catch(() => [] as string[])) {
      await redisCommand(portOf(master), "FLUSHALL").catch(() => {});
    }
  }
}

let quietWaitedS = 0;

/** Waits while the machine is busy with other work (see QUIET_BUSY_PERCENT); returns its last busy share. */
async function waitForQuiet(): Promise<{ busyPercent: number; waitedS: number }> {
  const started = performance.now();
  const waited = () => (performance.now() - started) / 1000;
  let busyPercent = await machineBusyOver(1_000);
  while (
    busyPercent > QUIET_BUSY_PERCENT &&
    waited() < 30 &&
    quietWaitedS + waited() < settings.quietBudgetS
  ) {
    await Bun.sleep(2_000);
    busyPercent = await machineBusyOver(1_000);
  }
  const waitedS = waited() - 1;
  quietWaitedS += waitedS;
  return { busyPercent, waitedS };
}

async function machineBusyOver(ms: number): Promise<number> {
  const before = machineCpuMs();
  await Bun.sleep(ms);
  const after = machineCpuMs();
  return Math.round((1000 * (after.busy - before.busy)) / (after.total - before.total)) / 10;
}

/**
 * The memory store's backlog: orders dispatched onto their partitions' streams by the intake's own
 * script (state key `queued` + XADD of the order), with no MongoDB document (the in-memory store needs
 * none: the order travels on its entry).
 */
async function dispatchOnly(env: Env, count: number, partitions: number): Promise<void> {
  const redis = createRedisConnection(
    { url: env.REDIS_URL!, clusterNodes: env.REDIS_CLUSTER_NODES },
    { name: "bench-scale-dispatch" },
  );
  redis.on("error", () => {});
  try {
    if (!(await awaitConnection(redis, 30_000))) throw new Error("the Redis Cluster did not answer");
    const state = new RedisPlacementState(redis, createRedisKeys(env.REDIS_KEY_PREFIX!, partitions), 900_000);
    for (let start = 0; start < count; start += 2_000) {
      const batch: Promise<unknown>[] = [];
      for (let i = start; i < Math.min(count, start + 2_000); i++) {
        const id = uuidV7();
        const order: DispatchedOrder = {
          _id: id,
          partition: partitionOf(id, partitions),
          type: "market",
          side: i % 2 === 0 ? "buy" : "sell",
          instrument: "US0378331005",
          limit_price_cents: null,
          quantity: 1 + (i % 7),
        };
        batch.push(state.dispatch(order, "intake"));
      }
      // An entry added: `added` (or true, from the boolean this returned before withdrawals existed).
      const added = (await Promise.all(batch)).filter((r) => r === "added" || r === true).length;
      if (added !== batch.length) throw new Error(`dispatch added ${added} of ${batch.length} entries`);
    }
  } finally {
    await closeRedis(redis);
  }
}

/**
 * The venue's own ceiling: `clients` closed loops POSTing new orders from this process for `seconds`,
 * and the venue process's CPU per order (its ceiling on one core, whatever the client costs).
 */
async function measureVenueCeiling(venue: ServiceProcess, seconds: number): Promise<VenueCeiling> {
  const clients = 64;
  const cpu = cpuMeter({ venue: () => processCpuMs(venue.process.pid)[0] });
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      const response = await fetch(`${venue.baseUrl}/orders`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          client_order_id: `ceiling-${next++}`,
          type: "market",
          side: "buy",
          instrument: "US0378331005",
          limit_price_cents: null,
          quantity: 1,
        }),
      }).catch(() => null);
      if (response?.status === 201) ok++;
      else failed++;
      await response?.text();
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  const elapsedS = (performance.now() - started) / 1000;
  const used = cpu.read();
  await resetVenue(venue);
  if (ok === 0 || failed > ok / 100) throw new Error(`venue ceiling: ${ok} placed, ${failed} failed`);
  const cpuMsPerOrder = (used.venue ?? 0) / ok;
  return {
    clients,
    seconds: elapsedS,
    ordersPerS: ok / elapsedS,
    venueCpuMsPerOrder: cpuMsPerOrder,
    perCoreCeiling: 1000 / cpuMsPerOrder,
    machineBusyPercent: used.machine_busy_percent ?? 0,
  };
}

/** The pid of the redis-server on `port` (INFO server). */
async function serverPid(port: number): Promise<number> {
  const info = String(await redisCommand(port, "INFO", "server"));
  const pid = Number(info.match(/process_id:(\d+)/)?.[1]);
  if (!pid) throw new Error(`no process_id from the Redis on ${port}`);
  return pid;
}

function portOf(node: string): number {
  return Number(node.slice(node.lastIndexOf(":") + 1));
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "-";
}

function fmtLoad(load: number[]): string {
  return load.map((l) => l.toFixed(1)).join(" ");
}
