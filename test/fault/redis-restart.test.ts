/**
 * Redis killed (-9) and restarted EMPTY while orders flow: the stream, its consumer group and every
 * pending entry are gone. POST /orders keeps answering 201 (the order document is its own outbox),
 * the actors recreate the group on NOGROUP, and the sweeper re-dispatches every order still waiting
 * from MongoDB, so each order that got a 201 before, during and after the gap is placed.
 *
 * Standalone Redis only: restarting the one Redis server is the fault. Its Redis Cluster counterpart, a
 * master killed (-9) mid-run and its replica taking over, is
 * test/integration/redis-cluster-placement.test.ts; the fault tests do not repeat it in cluster mode.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import {
  countPlaced,
  metricValue,
  placementEnv,
  redisFor,
  spawnActors,
  spawnService,
  spawnVenue,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { mongoFor, orderBody, postOrder, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

test("Redis restarted empty while orders flow: every 201 is placed, the group is recreated", async () => {
  const env = placementEnv(servers, {
    DISPATCH_GRACE_MS: "1500",
    SWEEP_INTERVAL_MS: "250",
    CLAIM_TIMEOUT_MS: "5000",
    BREAKER_TIMEOUT_MS: "3000",
    REDIS_COMMAND_TIMEOUT_MS: "300",
    // Slower than intake, so that a backlog is on the stream when Redis loses it.
    ACTOR_CONCURRENCY: "4",
  });
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 200 }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const [api, actors] = await Promise.all([spawnService("api", actorEnv), spawnActors(actorEnv, cleanup)]);
  cleanup.add(() => api.process.kill());
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const { redis, keys, stream } = redisFor(env, cleanup);

  // A steady trickle of orders from two clients for the whole test.
  const accepted: string[] = [];
  const refused: number[] = [];
  let flowing = true;
  const client = async () => {
    while (flowing) {
      const response = await postOrder(api.baseUrl, orderBody());
      if (response.status === 201) accepted.push(((await response.json()) as { id: string }).id);
      else refused.push(response.status);
    }
  };
  const flow = Promise.all([client(), client()]);
  cleanup.add(async () => {
    flowing = false;
    await flow;
  });

  try {
    await waitFor(async () => accepted.length >= 20 && (await countPlaced(mongo.orders)) >= 5, {
      timeoutMs: 30_000,
      message: "orders flowing and being placed",
    });
    const waitingAtKill = await mongo.orders.countDocuments({ status: { $in: ["accepted", "placing"] } });
    await servers.redis.kill();
    const acceptedBeforeGap = accepted.length;
    expect(waitingAtKill).toBeGreaterThan(0);
    // Orders keep getting 201 while Redis is down.
    await waitFor(() => accepted.length >= acceptedBeforeGap + 15, {
      timeoutMs: 30_000,
      message: "orders accepted while Redis is down",
    });
    const acceptedDuringGap = accepted.length - acceptedBeforeGap;
    await servers.redis.restart({ empty: true });
    const acceptedAtRestart = accepted.length;
    await waitFor(() => accepted.length >= acceptedAtRestart + 20, {
      timeoutMs: 30_000,
      message: "orders accepted after Redis came back",
    });
    flowing = false;
    await flow;

    expect(refused).toEqual([]);
    await waitUntilPlaced(mongo.orders, accepted.length, {
      ids: accepted,
      timeoutMs: 60_000,
      intervalMs: 500,
      message: `all ${accepted.length} accepted orders placed`,
    });

    // The group was recreated on the new, empty Redis, and the stream is read again.
    const groups = (await redis.xinfo("GROUPS", stream)) as unknown[][];
    expect(groups.map((group) => group[1])).toContain(keys.placementGroup);
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(accepted.length);
    expect(stats.duplicates).toBe(0);
    const redispatched =
      ((await metricValue(actors, "placement_sweeper_redispatched_total", { reason: "due" })) ?? 0) +
      ((await metricValue(actors, "placement_sweeper_redispatched_total", { reason: "stale_lease" })) ?? 0);
    expect(redispatched).toBeGreaterThan(0);
    console.log(
      `[redis-restart] ${accepted.length} orders got 201 (${waitingAtKill} waiting on the stream when Redis died, ${acceptedDuringGap} accepted while it was down); all placed; ` +
        `sweeper re-dispatched ${redispatched}; venue duplicates ${stats.duplicates}`,
    );
  } finally {
    flowing = false;
    await flow;
  }
});
