/**
 * Placement on a real Redis Cluster (3 masters, 3 replicas; REDIS_CLUSTER_NODES): 6 partitions spread
 * over the masters by their hash tags, two `actors` processes that each read every partition with one
 * XREADGROUP per stream, and the simulated venue. Every order is placed once; then a master is killed
 * (-9) mid-run, its replica takes over, and still every order is placed, once in MongoDB and once at
 * the venue (a resubmission it absorbed is counted and printed).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Cluster } from "ioredis";
import {
  type Env,
  metricValue,
  placementEnv,
  preloadOrders,
  redisFor,
  runDlq,
  spawnActors,
  spawnService,
  spawnVenue,
  statusCounts,
  submitOrders,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { redisCommand } from "../support/servers/redis.ts";
import { type RedisCluster, startRedisCluster } from "../support/servers/servers.ts";
import { mongoFor, type ServiceProcess, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(120_000);

const servers = useServers();
const { cleanup } = servers;
let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster();
}, 90_000);
afterAll(() => cluster?.stop(), 30_000);

const ORDERS = 600;
const PARTITIONS = 6;

/** Settings shared by both runs: 6 partitions on the cluster, short enough timeouts for a failover. */
function clusterEnv(): Env {
  return placementEnv(
    servers,
    {
      PLACEMENT_PARTITIONS: String(PARTITIONS),
      ACTOR_CONCURRENCY: "32",
      // The backlog is the test's own: re-dispatching orders merely waiting would only add load.
      DISPATCH_GRACE_MS: "30000",
      SWEEP_INTERVAL_MS: "2000",
      // An entry whose actor lost its node connection mid-placement is taken over this soon.
      CLAIM_TIMEOUT_MS: "6000",
      BREAKER_TIMEOUT_MS: "3000",
      // Node connections that fail are failed over to the replica: the breaker is about the venue.
      BREAKER_RESET_TIMEOUT_MS: "300",
      // A state key whose entry was lost in the failover is forgotten (and re-dispatched) this soon.
      PLACEMENT_TRACK_TTL_MS: "60000",
    },
    { redisCluster: cluster },
  );
}

/** The master (host:port) serving each placement stream, from the cluster's slot map. */
async function streamOwners(streams: readonly string[]): Promise<Map<string, string>> {
  const nodes = await cluster.clusterNodes();
  const owners = new Map<string, string>();
  for (const stream of streams) {
    const slot = Number(await redisCommand(nodes[0]!.port, "CLUSTER", "KEYSLOT", stream));
    const owner = nodes.find(
      (node) =>
        node.flags.includes("master") &&
        node.slots.some((range) => {
          const [from, to = from] = range.split("-").map(Number);
          return from !== undefined && slot >= from && slot <= (to ?? from);
        }),
    );
    owners.set(stream, owner?.address ?? "unknown");
  }
  return owners;
}

async function startRun(env: Env, venueLatencyMs: number) {
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: venueLatencyMs }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const { redis, keys } = redisFor(env, cleanup);
  return { venue, actorEnv, mongo, redis: redis as Cluster, keys };
}

async function readRestarts(actors: ServiceProcess[]): Promise<number> {
  let total = 0;
  for (const actor of actors) {
    total +=
      ((await metricValue(actor, "placement_read_failures_total")) ?? 0) +
      ((await metricValue(actor, "actor_restarts_total", { actor: "placement-read" })) ?? 0);
  }
  return total;
}

describe("placement on a Redis Cluster (REDIS_CLUSTER_NODES, 6 partitions, 2 actor processes)", () => {
  test("600 orders over 6 partitions on 3 masters: each placed once, every partition read by both actors", async () => {
    const env = clusterEnv();
    const { venue, actorEnv, mongo, redis, keys } = await startRun(env, 20);
    const owners = await streamOwners(keys.placementStreams);
    expect(new Set(owners.values()).size).toBeGreaterThan(1);

    const started = performance.now();
    const ids = await preloadOrders(env, ORDERS);
    const preloadSeconds = (performance.now() - started) / 1000;
    const actors = await Promise.all([spawnActors(actorEnv, cleanup), spawnActors(actorEnv, cleanup)]);
    await waitUntilPlaced(mongo.orders, ORDERS, {
      timeoutMs: 90_000,
      intervalMs: 500,
      message: `all ${ORDERS} orders placed`,
    });
    const seconds = (performance.now() - started) / 1000;

    expect(new Set(ids).size).toBe(ORDERS);
    expect(await mongo.orders.countDocuments({ status: "placed" })).toBe(ORDERS);
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(ORDERS);
    expect(stats.duplicates).toBe(0);
    // Each partition's entries went through its stream, and both processes read every stream.
    const perPartition = await mongo.orders
      .aggregate<{ _id: number; n: number }>([{ $group: { _id: "$partition", n: { $sum: 1 } } }])
      .toArray();
    expect(perPartition.map((p) => p._id).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    for (const stream of keys.placementStreams) {
      const consumers = (await redis.xinfo("CONSUMERS", stream, keys.placementGroup)) as unknown[][];
      expect(consumers.length, stream).toBeGreaterThanOrEqual(2);
    }
    // No read failed (one XREADGROUP over several slots would fail with CROSSSLOT on every pass).
    expect(await readRestarts(actors)).toBe(0);
    console.log(
      `[redis-cluster] ${ORDERS} orders over ${PARTITIONS} partitions on masters ${[...new Set(owners.values())].join(", ")}: ` +
        `preloaded in ${preloadSeconds.toFixed(1)} s, all placed ${seconds.toFixed(1)} s after the start; ` +
        `venue orders ${stats.orders}, duplicates ${stats.duplicates}`,
    );
  });

  test("POST /orders through an api process and the dlq command work on the cluster too", async () => {
    const env = clusterEnv();
    const { venue, actorEnv, mongo } = await startRun(env, 5);
    const [api] = await Promise.all([spawnService("api", actorEnv), spawnActors(actorEnv, cleanup)]);
    cleanup.add(() => api.process.kill());
    const { ids, statuses } = await submitOrders(api.baseUrl, 30, 4);
    expect(statuses.filter((status) => status !== 201)).toEqual([]);
    await waitUntilPlaced(mongo.orders, 30, { ids, timeoutMs: 30_000, message: "30 posted orders placed" });
    expect((await venueStats(venue)).orders).toBe(30);
    expect(await runDlq(env, ["list"])).toEqual({ code: 0, lines: [] });
  });

  test("a master killed (-9) mid-run: its replica takes over, and every order is placed once", async () => {
    const env = clusterEnv();
    const { venue, actorEnv, mongo, keys } = await startRun(env, 50);
    const owners = await streamOwners(keys.placementStreams);
    // The master with the most partitions; REDIS_URL's node (the first seed) when it is one of those.
    const counts = new Map<string, number>();
    for (const owner of owners.values()) counts.set(owner, (counts.get(owner) ?? 0) + 1);
    const most = Math.max(...counts.values());
    const seed = cluster.nodes[0]!;
    const victim = counts.get(seed) === most ? seed : [...counts].find(([, n]) => n === most)![0];
    const affected = keys.placementStreams
      .map((stream, partition) => ({ stream, partition }))
      .filter(({ stream }) => owners.get(stream) === victim)
      .map(({ partition }) => partition);

    const ids = await preloadOrders(env, ORDERS);
    const actors = await Promise.all([spawnActors(actorEnv, cleanup), spawnActors(actorEnv, cleanup)]);
    const placed = () => mongo.orders.countDocuments({ status: "placed" });
    const placedAffected = () =>
      mongo.orders.countDocuments({ status: "placed", partition: { $in: affected } });
    await waitFor(async () => (await placed()) >= 120, {
      timeoutMs: 60_000,
      intervalMs: 100,
      message: "a fifth of the orders placed before the kill",
    });
    const [atKill, affectedAtKill] = await Promise.all([placed(), placedAffected()]);
    const killedAt = performance.now();
    await cluster.killMaster(Number(victim.split(":").at(-1)));
    const sinceKill = () => Math.round(performance.now() - killedAt);

    // Placed counts after the kill, sampled: the first placement after it (any partition; orders already
    // at the venue when the master died may complete without it), and the first on the killed master's
    // partitions after its replica was promoted.
    const samples: { ms: number; any: number; affected: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [any, affectedPlaced] = await Promise.all([placed(), placedAffected()]);
        samples.push({ ms: sinceKill(), any, affected: affectedPlaced });
        await Bun.sleep(50);
      }
    })();
    cleanup.add(async () => {
      sampling = false;
      await sampler;
    });
    const failover = await cluster.waitForFailover(Number(victim.split(":").at(-1)));
    const affectedAtFailover = await placedAffected();
    await waitUntilPlaced(mongo.orders, ORDERS, {
      timeoutMs: 95_000,
      intervalMs: 250,
      message: `all ${ORDERS} orders placed after the failover`,
    });
    const allPlacedMs = sinceKill();
    sampling = false;
    await sampler;
    const nextAnyMs = samples.find((sample) => sample.any > atKill)?.ms;
    const resumedMs = samples.find(
      (sample) => sample.ms >= failover.ms && sample.affected > affectedAtFailover,
    )?.ms;
    const placedDuringFailover =
      (samples.findLast((s) => s.ms < failover.ms)?.affected ?? 0) - affectedAtKill;

    expect(new Set(ids).size).toBe(ORDERS);
    expect(await statusCounts(mongo.orders)).toEqual({ placed: ORDERS });
    const stats = await venueStats(venue);
    // Once at the venue: a resubmission (an entry taken over after its actor's node went away) is
    // found by the venue's client-order-id look-up or absorbed by its dedupe, never a second order.
    expect(stats.orders).toBe(ORDERS);
    const restarts = await readRestarts(actors);
    console.log(
      `[redis-cluster failover] killed master ${victim}${victim === seed ? " (REDIS_URL's node)" : ""} (${affected.length} of ${PARTITIONS} partitions: ${affected.join(", ")}) ` +
        `with ${atKill}/${ORDERS} placed; replica ${failover.master} promoted after ${failover.ms} ms; ` +
        `next placement ${nextAnyMs ?? "?"} ms after the kill; on the killed master's partitions ${placedDuringFailover} placed before the promotion (in flight at the kill), ` +
        `first after it ${resumedMs ?? "?"} ms after the kill; ` +
        `all placed ${allPlacedMs} ms after the kill; venue orders ${stats.orders}, duplicates absorbed ${stats.duplicates}, ` +
        `submissions ${stats.submissions}; read failures reported ${restarts}`,
    );
  });
});
