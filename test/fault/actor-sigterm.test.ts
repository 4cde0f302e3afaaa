/**
 * SIGTERM to an actor process under load (docs/ARCHITECTURE.md guarantee 6): it stops taking entries,
 * finishes what it holds within SHUTDOWN_DEADLINE_MS (or aborts and releases it when the deadline is
 * shorter than the venue's answer), and exits 0. A second actor process places everything else; no
 * order is lost and the venue records each one once.
 *
 * Both Redis modes (test/support/placement.ts's `useRedisMode`): standalone, the second process starts after
 * the first exited; on a Redis Cluster (6 partitions over 3 masters), it already runs beside the first,
 * reading every partition, while the first drains.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  firstActorHoldingOrders,
  type PlacementRedis,
  placementEnv,
  REDIS_MODES,
  spawnActors,
  useRedisMode,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { useServers } from "../support/system.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

const VENUE_LATENCY_MS = 1500;

async function sigtermUnderLoad(redis: PlacementRedis, shutdownDeadlineMs: number) {
  const env = placementEnv(
    servers,
    {
      SHUTDOWN_DEADLINE_MS: String(shutdownDeadlineMs),
      // The submission window (CLAIM_TIMEOUT_MS - BREAKER_TIMEOUT_MS = 3 s) covers an order leased ahead
      // waiting one venue answer (1.5 s) for its slot: the first process submits those too.
      CLAIM_TIMEOUT_MS: "6000",
      BREAKER_TIMEOUT_MS: "3000",
      RECLAIM_INTERVAL_MS: "250",
      SWEEP_INTERVAL_MS: "500",
      DISPATCH_GRACE_MS: "10000",
      ACTOR_CONCURRENCY: "16",
    },
    { redis },
  );
  const { venue, actorEnv, mongo, ids, first, peers, held } = await firstActorHoldingOrders(env, cleanup, {
    venueLatencyMs: VENUE_LATENCY_MS,
    peers: redis.actorProcesses - 1,
  });
  const signalledAt = performance.now();
  first.process.signal("SIGTERM");
  const code = await first.process.exited;
  const exitMs = performance.now() - signalledAt;
  expect(code).toBe(0);
  // The drain deadline, then at most a second to settle aborted calls and a second for the read loop.
  expect(exitMs).toBeLessThan(shutdownDeadlineMs + 3_000);

  // Nothing the first process held is left half-done: each held order is placed or back to `accepted`.
  const heldNow = await mongo.orders.find({ _id: { $in: held } }).toArray();
  const placedByFirst = heldNow.filter((order) => order.status === "placed").length;
  const released = heldNow.filter((order) => order.status === "accepted").length;
  expect(placedByFirst + released).toBe(held.length);

  // Standalone: a second process starts now; cluster: the peer already running places the rest.
  const survivors = peers.length > 0 ? peers : [await spawnActors(actorEnv, cleanup)];
  await waitUntilPlaced(mongo.orders, ids.length, {
    ids,
    timeoutMs: 60_000,
    intervalMs: 250,
    message: "every order placed after the SIGTERM",
  });
  const stats = await venueStats(venue);
  expect(stats.orders).toBe(ids.length);
  expect(stats.duplicates).toBe(0);
  for (const survivor of survivors) await survivor.process.kill();
  return { exitMs, held: held.length, placedByFirst, released, stats };
}

describe.each(REDIS_MODES)("SIGTERM under load, Redis %s", (mode) => {
  const redis = useRedisMode(mode, cleanup);
  const tag = redis.tag("actor-sigterm");

  test("deadline longer than the venue's answer: in-flight orders finish, exit 0, nothing lost", async () => {
    const result = await sigtermUnderLoad(redis, 5_000);
    // Everything held was finished by the first process itself before it exited.
    expect(result.placedByFirst).toBe(result.held);
    console.log(
      `${tag} deadline 5000 ms: exit 0 after ${result.exitMs.toFixed(0)} ms; ${result.placedByFirst}/${result.held} held orders finished before exit; venue duplicates ${result.stats.duplicates}`,
    );
  });

  test("deadline shorter than the venue's answer: in-flight calls are aborted and released, exit 0, nothing lost", async () => {
    const result = await sigtermUnderLoad(redis, 300);
    expect(result.released).toBeGreaterThan(0);
    console.log(
      `${tag} deadline 300 ms: exit 0 after ${result.exitMs.toFixed(0)} ms; ${result.released}/${result.held} held orders released for the next actor; venue duplicates ${result.stats.duplicates}`,
    );
  });
});
