/**
 * Placement under a flaky venue: the API, an actors process and the simulated venue as real processes
 * on a real Redis and MongoDB-wire server. Every order that got a 201 ends `placed`, and the venue
 * records each one exactly once (docs/ARCHITECTURE.md guarantees 1 and 2).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  placementEnv,
  preloadOrders,
  spawnActors,
  spawnService,
  spawnVenue,
  submitOrders,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

/**
 * 500 orders on a real mongod and on FerretDB over PostgreSQL. FerretDB v1 on SQLite (the fallback
 * where PostgreSQL is not installed) finds a document by a string _id for an update by decoding the
 * whole collection, so placing N orders costs O(N^2): 500 take it ~100 s on two cores, 300 about a
 * third of that. The property under test does not depend on the count.
 */
const orderCount = () => (servers.mongo.kind === "ferretdb" ? 300 : 500);

describe("placement actors against a flaky venue", () => {
  test("500 orders (300 on FerretDB over SQLite), venue failing 30% with 20 ms latency: all placed, none twice at the venue", async () => {
    const total = orderCount();
    const preloadCount = total - 50;
    const env = placementEnv(servers, {
      // Fast retries: the test proves they converge, not how long the default backoff waits.
      RETRY_BASE_DELAY_MS: "20",
      RETRY_MAX_DELAY_MS: "300",
      // Retries are re-dispatched by the sweeper; each sweep is two collection scans on FerretDB.
      SWEEP_INTERVAL_MS: "2000",
      ACTOR_CONCURRENCY: "32",
      CLAIM_TIMEOUT_MS: "20000",
      BREAKER_TIMEOUT_MS: "5000",
      // The backlog takes a while to drain on FerretDB: re-dispatching waiting orders would only add
      // load. The sweeper still re-drives retries (their sweep time is the retry time).
      DISPATCH_GRACE_MS: "30000",
      // A run of failures may open the breaker by chance; it must then close again soon.
      BREAKER_RESET_TIMEOUT_MS: "300",
    });
    const venue = await spawnVenue(env, { failureRate: 0.3, latencyMs: 20 }, cleanup);
    const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
    const [api] = await Promise.all([spawnService("api", actorEnv), spawnActors(actorEnv, cleanup)]);
    cleanup.add(() => api.process.kill());
    const mongo = mongoFor(env);
    cleanup.add(() => mongo.client.close());

    // Most written the way the API writes them (MongoDB, then XADD) in bulk, 50 through POST /orders while
    // the actors work: single POSTs on FerretDB would spend much of this test's time on intake, which
    // the intake tests cover.
    const started = performance.now();
    const preloaded = await preloadOrders(env, preloadCount);
    const { ids: posted, statuses } = await submitOrders(api.baseUrl, 50, 4);
    expect(statuses.filter((status) => status !== 201)).toEqual([]);
    const ids = [...preloaded, ...posted];
    expect(new Set(ids).size).toBe(total);

    // The database holds only this test's orders: a plain count is the cheapest probe.
    await waitUntilPlaced(mongo.orders, total, {
      timeoutMs: 90_000,
      intervalMs: 1000,
      message: `all ${total} orders placed`,
    });
    const seconds = (performance.now() - started) / 1000;

    const stats = await venueStats(venue);
    expect(stats.orders).toBe(total);
    expect(stats.duplicates).toBe(0);
    // The venue really failed about 30% of the submissions, and every failure was retried.
    expect(stats.failures).toBeGreaterThan(50);
    expect(stats.submissions).toBe(stats.orders + stats.failures);
    const placed = await mongo.orders.find({ _id: { $in: ids } }).toArray();
    expect(placed.every((order) => typeof order.venue_order_id === "string")).toBe(true);
    const retried = placed.filter((order) => (order.attempts as number) > 1).length;
    expect(retried).toBeGreaterThan(0);
    console.log(
      `[placement] ${total} orders (${servers.mongo.kind}) placed in ${seconds.toFixed(1)} s; venue submissions ${stats.submissions}, failures ${stats.failures}, duplicates ${stats.duplicates}; ${retried} orders needed more than one attempt`,
    );
  });
});
