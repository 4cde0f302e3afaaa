/**
 * kill -9 of an actor process while it holds orders in flight at a slow venue. Its pending entries
 * are reclaimed by a second actor process once idle past CLAIM_TIMEOUT_MS; the new holder looks the
 * order up at the venue before resubmitting, so every order is placed and the venue records each once
 * (ARCHITECTURE.md guarantees 1 and 2).
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { waitFor } from "../harness/wait-for.ts";
import { mongoFor, useServers } from "../support/system.ts";
import {
  countPlaced,
  metricValue,
  placementEnv,
  preloadOrders,
  spawnActors,
  spawnVenue,
  statusCounts,
  venueStats,
} from "./placement-fixture.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

test("kill -9 of an actor mid-placement: a second actor reclaims its orders, each placed once", async () => {
  const env = placementEnv(servers, {
    CLAIM_TIMEOUT_MS: "4000",
    BREAKER_TIMEOUT_MS: "3000",
    RECLAIM_INTERVAL_MS: "250",
    SWEEP_INTERVAL_MS: "1000",
    // The stream and the reclaimer bring the orders; the sweeper is only the backstop (e.g. for a
    // claim that failed on a busy FerretDB).
    DISPATCH_GRACE_MS: "10000",
    ACTOR_CONCURRENCY: "16",
  });
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 1500 }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const ids = await preloadOrders(env, 40);

  const first = await spawnActors(actorEnv, cleanup);
  // In flight: claimed in MongoDB (`placing`) and waiting for the venue's answer.
  await waitFor(
    async () =>
      ((await metricValue(first, "actor_in_flight_messages", { actor: "placement" })) ?? 0) >= 8 &&
      (await mongo.orders.countDocuments({ status: "placing" })) >= 8,
    { timeoutMs: 30_000, intervalMs: 50, message: "first actor holds orders in flight" },
  );
  const held = (await mongo.orders.find({ status: "placing" }, { projection: { _id: 1 } }).toArray()).map(
    (order) => order._id,
  );
  const killedAt = Date.now();
  expect(await first.process.kill()).toBe(137);

  const second = await spawnActors(actorEnv, cleanup);
  await waitFor(async () => (await countPlaced(mongo.orders, ids)) === ids.length, {
    timeoutMs: 60_000,
    intervalMs: 250,
    message: "every order placed after the kill",
  }).catch(async (error) => {
    throw new Error(`${error.message}; statuses ${JSON.stringify(await statusCounts(mongo.orders))}`);
  });

  const orders = await mongo.orders.find({ _id: { $in: ids } }).toArray();
  const lastPlacedAt = Math.max(...orders.map((order) => (order.placed_at as Date).getTime()));
  const heldOrders = orders.filter((order) => held.includes(order._id));
  // The held orders were claimed again by the second process (a second attempt), and placed.
  expect(heldOrders.length).toBeGreaterThanOrEqual(8);
  expect(heldOrders.every((order) => order.status === "placed" && (order.attempts as number) >= 2)).toBe(
    true,
  );
  const stats = await venueStats(venue);
  expect(stats.orders).toBe(ids.length);
  expect(stats.duplicates).toBe(0);
  const reclaimed = (await metricValue(second, "placement_reclaimed_entries_total")) ?? 0;
  const staleLeases =
    (await metricValue(second, "placement_sweeper_redispatched_total", { reason: "stale_lease" })) ?? 0;
  expect(reclaimed + staleLeases).toBeGreaterThan(0);
  console.log(
    `[actor-kill] ${heldOrders.length} orders in flight at kill -9; kill to last placement ${lastPlacedAt - killedAt} ms ` +
      `(CLAIM_TIMEOUT_MS ${env.CLAIM_TIMEOUT_MS}, venue latency 1500 ms); reclaimed entries ${reclaimed}, ` +
      `stale leases re-dispatched ${staleLeases}; venue orders ${stats.orders}, submissions ${stats.submissions}, duplicates ${stats.duplicates}`,
  );
});
