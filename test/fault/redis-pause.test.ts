/**
 * Redis stopped (SIGSTOP) for 5 s under an actor process: the TCP connections stay open but nothing
 * answers, the half-open case no connection error reveals. The read loop's connection times out a
 * little after its BLOCK time (the failure is logged and counted), the dead connections are replaced,
 * and after SIGCONT every order is placed, once at the venue.
 *
 * Standalone Redis only: stopping the one Redis server (and its one XREADGROUP over both streams) is the
 * fault. On a Redis Cluster a node that stops answering is failed over to its replica: that case, a
 * master killed (-9) mid-run, is test/integration/redis-cluster-placement.test.ts; the fault tests do
 * not repeat it in cluster mode.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import {
  countPlaced,
  metricValue,
  placementEnv,
  preloadOrders,
  spawnActors,
  spawnVenue,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { redisCommand } from "../support/servers/redis.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

const ORDERS = 300;
const PAUSE_MS = 5_000;

/** The id of the actor's read connection (CLIENT LIST), or undefined while it has none. */
async function readConnectionIds(port: number): Promise<string[]> {
  const list = String(await redisCommand(port, "CLIENT", "LIST"));
  return list
    .split("\n")
    .filter((line) => line.includes(" name=orders-actors-read "))
    .map((line) => line.match(/^id=(\d+)/)?.[1] ?? "?");
}

test("Redis paused (SIGSTOP) for 5 s: the read loop notices, reconnects, and placement resumes after SIGCONT", async () => {
  const env = placementEnv(servers, {
    // Two streams: the read loop's one XREADGROUP over both is the call that must time out.
    PLACEMENT_PARTITIONS: "2",
    ACTOR_CONCURRENCY: "4",
    CLAIM_TIMEOUT_MS: "6000",
    BREAKER_TIMEOUT_MS: "3000",
    REDIS_COMMAND_TIMEOUT_MS: "300",
    DISPATCH_GRACE_MS: "30000",
    SWEEP_INTERVAL_MS: "1000",
  });
  // Slow enough that a backlog is waiting on the streams through the pause.
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 100 }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const ids = await preloadOrders(env, ORDERS);
  const actors = await spawnActors(actorEnv, cleanup);
  const readFailures = async () => (await metricValue(actors, "placement_read_failures_total")) ?? 0;
  await waitFor(async () => (await countPlaced(mongo.orders)) >= 30, {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: "orders being placed before the pause",
  });
  const connectionsBefore = await readConnectionIds(servers.redis.port);
  expect(connectionsBefore).toHaveLength(1);
  const failuresBefore = await readFailures();
  const placedAtPause = await countPlaced(mongo.orders);

  const pausedAt = performance.now();
  servers.redis.pause();
  let noticedMs: number | undefined;
  try {
    // The actor's own HTTP server still answers: its counters show when the read loop gave up a read.
    await waitFor(async () => (await readFailures()) > failuresBefore, {
      timeoutMs: PAUSE_MS,
      intervalMs: 50,
      message: "the read loop noticed the stopped Redis",
    });
    noticedMs = Math.round(performance.now() - pausedAt);
    await Bun.sleep(Math.max(0, PAUSE_MS - (performance.now() - pausedAt)));
  } finally {
    servers.redis.resume();
  }
  const resumedAt = performance.now();
  const placedAtResume = await countPlaced(mongo.orders);
  await waitFor(async () => (await countPlaced(mongo.orders)) > placedAtResume, {
    timeoutMs: 30_000,
    intervalMs: 50,
    message: "an order placed after SIGCONT",
  });
  const nextPlacedMs = Math.round(performance.now() - resumedAt);
  await waitUntilPlaced(mongo.orders, ORDERS, {
    ids,
    timeoutMs: 60_000,
    intervalMs: 250,
    message: `all ${ORDERS} orders placed after the pause`,
  });
  const allPlacedMs = Math.round(performance.now() - resumedAt);

  // The read connection was given up and replaced (a new client id), not merely waited on.
  const connectionsAfter = await readConnectionIds(servers.redis.port);
  expect(connectionsAfter).toHaveLength(1);
  expect(connectionsAfter[0]).not.toBe(connectionsBefore[0]);
  expect(actors.process.logs).toMatch(/timed out|Socket timeout/);
  const stats = await venueStats(venue);
  expect(stats.orders).toBe(ORDERS);
  expect(await countPlaced(mongo.orders, ids)).toBe(ORDERS);
  const failures = (await readFailures()) - failuresBefore;
  console.log(
    `[redis-pause] Redis stopped ${PAUSE_MS} ms with ${placedAtPause}/${ORDERS} placed (${placedAtResume} at SIGCONT): ` +
      `the read loop's first failure after ${noticedMs} ms (${failures} in all); read connection ${connectionsBefore[0]} replaced by ${connectionsAfter[0]}; ` +
      `next placement ${nextPlacedMs} ms after SIGCONT, all placed ${allPlacedMs} ms after it; ` +
      `venue orders ${stats.orders}, duplicates absorbed ${stats.duplicates}`,
  );
});
