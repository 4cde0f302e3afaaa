/**
 * The dead-letter stream, through the operator's own command (`bun src/main.ts dlq list|replay` as a
 * real process). A poison message (an order document the handler cannot turn into a venue order)
 * is delivered MAX_DELIVERIES times, then dead-lettered with its reason and the order parked; once the
 * document is repaired, `dlq replay --all` places it. Parked orders are read from MongoDB too, so
 * `dlq list` still shows them after Redis restarted empty. A venue rejection is final at once: the order
 * is `rejected` with the venue's reason (no dead-letter entry), and the breaker does not count it.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  type Env,
  metricValue,
  placementEnv,
  preloadOrders,
  redisFor,
  runDlq,
  spawnActors,
  spawnVenue,
  venueStats,
} from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

type DeadLetter = Record<string, string>;

async function deadLetters(env: Env): Promise<DeadLetter[]> {
  return (await runDlq(env, ["list"])).lines.map((line) => JSON.parse(line) as DeadLetter);
}

/** Quick redelivery, two deliveries to dead letters, and only the stream and the reclaimer delivering
 * (no sweeper re-dispatch). */
function poisonEnv(): Env {
  return placementEnv(servers, {
    MAX_DELIVERIES: "2",
    CLAIM_TIMEOUT_MS: "1500",
    BREAKER_TIMEOUT_MS: "500",
    RECLAIM_INTERVAL_MS: "200",
    SWEEP_INTERVAL_MS: "600000",
    DISPATCH_GRACE_MS: "600000",
  });
}

/** An order whose document lacks `instrument`: the handler throws on every delivery. */
function preloadPoisonOrder(env: Env): Promise<string[]> {
  return preloadOrders(env, 1, {
    shape: ({ instrument: _dropped, ...rest }) => rest as Record<string, unknown>,
  });
}

describe("dead-letter stream", () => {
  test("a poison message is dead-lettered with its reason, the order parked, and replay places it once repaired", async () => {
    const env = poisonEnv();
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 20 }, cleanup);
    const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
    const mongo = mongoFor(env);
    cleanup.add(() => mongo.client.close());
    const { redis, keys } = redisFor(env, cleanup);

    const [poisonId] = await preloadPoisonOrder(env);
    const healthy = await preloadOrders(env, 3);
    const actors = await spawnActors(actorEnv, cleanup);

    await waitFor(async () => (await redis.xlen(keys.deadLetterStream)) >= 1, {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: "poison entry dead-lettered",
    });
    const [entry, ...others] = await deadLetters(env);
    expect(others).toEqual([]);
    expect(JSON.parse(entry!.payload!)).toMatchObject({ order_id: poisonId });
    expect(entry!.reason).toContain("delivered 2 times");
    expect(entry!.last_error).toContain(`order ${poisonId} is malformed`);
    expect(entry!.deliveries).toBe("2");
    expect(
      (await metricValue(actors, "placement_dead_lettered_total", { reason: "max_deliveries" })) ?? 0,
    ).toBeGreaterThanOrEqual(1);
    // Parked: the sweeper leaves it alone until an operator replays it. The healthy orders went through.
    await waitFor(async () => (await mongo.orders.findOne({ _id: poisonId }))?.parked_at instanceof Date, {
      timeoutMs: 10_000,
      message: "poison order parked",
    });
    expect(await mongo.orders.countDocuments({ _id: { $in: healthy }, status: "placed" })).toBe(3);

    await mongo.orders.updateOne({ _id: poisonId! }, { $set: { instrument: "US0378331005" } });
    const replay = await runDlq(env, ["replay", "--all"]);
    expect(replay.lines.map((line) => JSON.parse(line))).toEqual([
      { id: entry!.id, order_id: poisonId, result: "replayed" },
    ]);
    await waitFor(async () => (await mongo.orders.findOne({ _id: poisonId }))?.status === "placed", {
      timeoutMs: 30_000,
      message: "replayed order placed",
    });
    const placed = await mongo.orders.findOne({ _id: poisonId });
    expect(placed?.parked_at).toBeNull();
    expect(typeof placed?.venue_order_id).toBe("string");
    expect(await deadLetters(env)).toEqual([]);
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(4);
    expect(stats.duplicates).toBe(0);
    console.log(
      `[dead-letter] poison order dead-lettered after ${entry!.deliveries} deliveries (${entry!.last_error}); replayed and placed`,
    );
  });

  test("parked orders are listed and replayed from MongoDB after Redis restarted empty", async () => {
    const env = poisonEnv();
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 20 }, cleanup);
    const mongo = mongoFor(env);
    cleanup.add(() => mongo.client.close());
    const [poisonId] = await preloadPoisonOrder(env);
    await spawnActors({ ...env, EXCHANGE_URL: venue.baseUrl }, cleanup);
    await waitFor(async () => (await mongo.orders.findOne({ _id: poisonId }))?.parked === true, {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: "poison order parked",
    });

    await servers.redis.restart({ empty: true });
    const listed = await deadLetters(env);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ order_id: poisonId, source: "mongodb", parked: true });
    expect(typeof listed[0]!.parked_at).toBe("string");
    expect(listed[0]!.last_error).toContain("delivered 2 times");

    await mongo.orders.updateOne({ _id: poisonId! }, { $set: { instrument: "US0378331005" } });
    const replay = await runDlq(env, ["replay", "--all"]);
    expect(replay.lines.map((line) => JSON.parse(line))).toEqual([
      { order_id: poisonId, source: "mongodb", result: "replayed" },
    ]);
    await waitFor(async () => (await mongo.orders.findOne({ _id: poisonId }))?.status === "placed", {
      timeoutMs: 30_000,
      message: "replayed order placed",
    });
    expect(await deadLetters(env)).toEqual([]);
  });

  test("a venue rejection is final: order rejected with the venue's reason, no dead-letter entry, breaker closed", async () => {
    const env = placementEnv(servers, {
      CLAIM_TIMEOUT_MS: "3000",
      BREAKER_TIMEOUT_MS: "1000",
      // Six rejections would open the breaker if it counted them.
      BREAKER_VOLUME_THRESHOLD: "3",
    });
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 20 }, cleanup);
    const mongo = mongoFor(env);
    cleanup.add(() => mongo.client.close());
    const { redis, keys } = redisFor(env, cleanup);
    // An 11-character instrument: the API would refuse it, the venue's schema does.
    const rejectedIds = await preloadOrders(env, 6, {
      shape: (record) => ({ ...record, instrument: "US037833100" }),
    });
    const actors = await spawnActors({ ...env, EXCHANGE_URL: venue.baseUrl }, cleanup);

    await waitFor(
      async () =>
        (await mongo.orders.countDocuments({ _id: { $in: rejectedIds }, status: "rejected" })) === 6,
      { timeoutMs: 30_000, message: "orders rejected" },
    );
    const orders = await mongo.orders.find({ _id: { $in: rejectedIds } }).toArray();
    for (const order of orders) {
      expect(order.attempts).toBe(1);
      expect(order.rejection_reason).toContain("instrument");
      expect(order.parked).not.toBe(true);
    }
    // Final in MongoDB, not a dead letter: nothing on the stream, nothing for `dlq list` to show.
    expect(await redis.xlen(keys.deadLetterStream)).toBe(0);
    expect(await deadLetters(env)).toEqual([]);
    expect(await metricValue(actors, "exchange_breaker_state")).toBe(0);
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(0);
    console.log(`[dead-letter] venue rejection: ${orders[0]?.rejection_reason}`);
  });
});
