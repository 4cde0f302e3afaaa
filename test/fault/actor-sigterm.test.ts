/**
 * SIGTERM to an actor process under load (ARCHITECTURE.md guarantee 6): it stops taking entries,
 * finishes what it holds within SHUTDOWN_DEADLINE_MS (or aborts and releases it when the deadline is
 * shorter than the venue's answer), and exits 0. A second actor process places everything else; no
 * order is lost and the venue records each one once.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
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

const VENUE_LATENCY_MS = 1500;

async function sigtermUnderLoad(shutdownDeadlineMs: number) {
  const env = placementEnv(servers, {
    SHUTDOWN_DEADLINE_MS: String(shutdownDeadlineMs),
    CLAIM_TIMEOUT_MS: "4000",
    BREAKER_TIMEOUT_MS: "3000",
    RECLAIM_INTERVAL_MS: "250",
    SWEEP_INTERVAL_MS: "500",
    DISPATCH_GRACE_MS: "10000",
    ACTOR_CONCURRENCY: "16",
  });
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: VENUE_LATENCY_MS }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const ids = await preloadOrders(env, 40);

  const first = await spawnActors(actorEnv, cleanup);
  await waitFor(
    async () =>
      ((await metricValue(first, "actor_in_flight_messages", { actor: "placement" })) ?? 0) >= 8 &&
      (await mongo.orders.countDocuments({ status: "placing" })) >= 8,
    { timeoutMs: 30_000, intervalMs: 50, message: "first actor holds orders in flight" },
  );
  const held = (await mongo.orders.find({ status: "placing" }, { projection: { _id: 1 } }).toArray()).map(
    (order) => order._id,
  );
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

  const second = await spawnActors(actorEnv, cleanup);
  await waitFor(async () => (await countPlaced(mongo.orders, ids)) === ids.length, {
    timeoutMs: 60_000,
    intervalMs: 250,
    message: "every order placed after the SIGTERM",
  }).catch(async (error) => {
    throw new Error(`${error.message}; statuses ${JSON.stringify(await statusCounts(mongo.orders))}`);
  });
  const stats = await venueStats(venue);
  expect(stats.orders).toBe(ids.length);
  expect(stats.duplicates).toBe(0);
  await second.process.kill();
  return { exitMs, held: held.length, placedByFirst, released, stats };
}

describe("SIGTERM under load", () => {
  test("deadline longer than the venue's answer: in-flight orders finish, exit 0, nothing lost", async () => {
    const result = await sigtermUnderLoad(5_000);
    // Everything held was finished by the first process itself before it exited.
    expect(result.placedByFirst).toBe(result.held);
    console.log(
      `[actor-sigterm] deadline 5000 ms: exit 0 after ${result.exitMs.toFixed(0)} ms; ${result.placedByFirst}/${result.held} held orders finished before exit; venue duplicates ${result.stats.duplicates}`,
    );
  });

  test("deadline shorter than the venue's answer: in-flight calls are aborted and released, exit 0, nothing lost", async () => {
    const result = await sigtermUnderLoad(300);
    expect(result.released).toBeGreaterThan(0);
    console.log(
      `[actor-sigterm] deadline 300 ms: exit 0 after ${result.exitMs.toFixed(0)} ms; ${result.released}/${result.held} held orders released for the next actor; venue duplicates ${result.stats.duplicates}`,
    );
  });
});
