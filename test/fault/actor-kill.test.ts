/**
 * kill -9 of an actor process while it holds orders in flight at a slow venue. Its pending entries
 * are reclaimed by another actor process once idle past CLAIM_TIMEOUT_MS; the new holder looks the
 * order up at the venue before resubmitting, so every order is placed and the venue records each once
 * (docs/ARCHITECTURE.md guarantees 1 and 2).
 *
 * Both Redis modes (test/support/placement.ts's `useRedisMode`): standalone, a second process started after
 * the kill reclaims; on a Redis Cluster (6 partitions over 3 masters), the second process already runs
 * beside the victim, reading every partition, and reclaims on every partition the victim held.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { partitionOf } from "../../src/domain/order.ts";
import {
  firstActorHoldingOrders,
  metricValue,
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

describe.each(REDIS_MODES)("Redis %s", (mode) => {
  const redis = useRedisMode(mode, cleanup);

  test("kill -9 of an actor mid-placement: a second actor reclaims its orders, each placed once", async () => {
    const env = placementEnv(
      servers,
      {
        CLAIM_TIMEOUT_MS: "4000",
        BREAKER_TIMEOUT_MS: "3000",
        RECLAIM_INTERVAL_MS: "250",
        SWEEP_INTERVAL_MS: "1000",
        // The stream and the reclaimer bring the orders; the sweeper is only the backstop.
        DISPATCH_GRACE_MS: "10000",
        ACTOR_CONCURRENCY: "16",
      },
      { redis },
    );
    const { venue, actorEnv, mongo, ids, first, peers, held } = await firstActorHoldingOrders(env, cleanup, {
      venueLatencyMs: 1500,
      peers: redis.actorProcesses - 1,
    });
    const killedAt = Date.now();
    expect(await first.process.kill()).toBe(137);

    // Standalone: a second process starts after the kill; cluster: the peer already running takes over.
    const survivors = peers.length > 0 ? peers : [await spawnActors(actorEnv, cleanup)];
    await waitUntilPlaced(mongo.orders, ids.length, {
      ids,
      timeoutMs: 60_000,
      intervalMs: 250,
      message: "every order placed after the kill",
    });

    const orders = await mongo.orders.find({ _id: { $in: ids } }).toArray();
    const lastPlacedAt = Math.max(...orders.map((order) => (order.placed_at as Date).getTime()));
    const heldOrders = orders.filter((order) => held.includes(order._id));
    // The held orders were taken over by a surviving process (their leases expired, their entries were
    // reclaimed and looked up at the venue first), and placed once.
    expect(heldOrders.length).toBeGreaterThanOrEqual(8);
    expect(heldOrders.every((order) => order.status === "placed")).toBe(true);
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(ids.length);
    expect(stats.duplicates).toBe(0);
    let reclaimed = 0;
    let staleLeases = 0;
    for (const survivor of survivors) {
      reclaimed += (await metricValue(survivor, "placement_reclaimed_entries_total")) ?? 0;
      staleLeases +=
        (await metricValue(survivor, "placement_sweeper_redispatched_total", { reason: "due" })) ?? 0;
    }
    expect(reclaimed + staleLeases).toBeGreaterThan(0);
    const heldPartitions = new Set(held.map((id) => partitionOf(id, redis.partitions))).size;
    const where =
      redis.partitions > 1
        ? ` (on ${heldPartitions} of ${redis.partitions} partitions; the survivor was already reading all of them)`
        : "";
    console.log(
      `${redis.tag("actor-kill")} ${heldOrders.length} orders in flight at kill -9${where}; kill to last placement ${lastPlacedAt - killedAt} ms ` +
        `(CLAIM_TIMEOUT_MS ${env.CLAIM_TIMEOUT_MS}, venue latency 1500 ms); reclaimed entries ${reclaimed}, ` +
        `stale leases re-dispatched ${staleLeases}; venue orders ${stats.orders}, submissions ${stats.submissions}, duplicates ${stats.duplicates}`,
    );
  });
});
