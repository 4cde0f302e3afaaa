/**
 * The venue down for longer than the breaker's reset timeout (docs/ARCHITECTURE.md guarantee 3): the
 * breaker opens, the actors stop taking entries (no attempts burned, no retry storm: only the half-open
 * trials reach the venue), POST /orders keeps answering 201, and once the venue is back everything
 * drains.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import { waitFor } from "../harness/wait-for.ts";
import { mongoFor, orderBody, postOrder, useServers } from "../support/system.ts";
import {
  configureVenue,
  metricValue,
  placementEnv,
  spawnActors,
  spawnService,
  spawnVenue,
  submitOrders,
  venueStats,
  waitUntilPlaced,
} from "./placement-fixture.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

const RESET_MS = 1500;

test("venue outage: breaker opens, actors stop pulling, intake answers 201, all drains afterwards", async () => {
  const env = placementEnv(servers, {
    BREAKER_RESET_TIMEOUT_MS: String(RESET_MS),
    BREAKER_VOLUME_THRESHOLD: "5",
    BREAKER_ERROR_THRESHOLD_PERCENT: "50",
    CLAIM_TIMEOUT_MS: "5000",
    BREAKER_TIMEOUT_MS: "2000",
    RETRY_BASE_DELAY_MS: "100",
    RETRY_MAX_DELAY_MS: "1000",
    DISPATCH_GRACE_MS: "2000",
    SWEEP_INTERVAL_MS: "250",
  });
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 20 }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const [api, actors] = await Promise.all([spawnService("api", actorEnv), spawnActors(actorEnv, cleanup)]);
  cleanup.add(() => api.process.kill());
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const breakerState = () => metricValue(actors, "exchange_breaker_state");
  const halfOpens = async () =>
    (await metricValue(actors, "exchange_breaker_transitions_total", { to: "half-open" })) ?? 0;

  const healthy = await submitOrders(api.baseUrl, 10, 5);
  await waitUntilPlaced(mongo.orders, 10, {
    ids: healthy.ids,
    timeoutMs: 30_000,
    message: "orders placed before the outage",
  });
  expect(await breakerState()).toBe(0);

  await configureVenue(venue, { outage: true });
  const duringOutage = await submitOrders(api.baseUrl, 30, 5);
  await waitFor(async () => (await breakerState()) === 2, { timeoutMs: 30_000, message: "breaker open" });
  // Let what was already taken before the breaker opened finish failing.
  await waitFor(
    async () =>
      (await breakerState()) === 2 &&
      (await metricValue(actors, "actor_in_flight_messages", { actor: "placement" })) === 0,
    { timeoutMs: 30_000, message: "breaker open and nothing in flight" },
  );

  // The observation window: at least two reset timeouts, so that half-open trials happen in it.
  const failedAttempts = async () =>
    (await metricValue(actors, "placement_outcomes_total", { outcome: "retry" })) ?? 0;
  const attemptsBefore = await failedAttempts();
  const submissionsBefore = (await venueStats(venue)).submissions;
  const halfOpensBefore = await halfOpens();
  const latencies: number[] = [];
  const statuses: number[] = [];
  await waitFor(
    async () => {
      const started = performance.now();
      const response = await postOrder(api.baseUrl, orderBody());
      latencies.push(performance.now() - started);
      statuses.push(response.status);
      return (await halfOpens()) - halfOpensBefore >= 2;
    },
    { timeoutMs: 30_000, intervalMs: 100, message: "two half-open trials during the outage" },
  );
  const trials = (await halfOpens()) - halfOpensBefore;
  const attemptsRise = (await failedAttempts()) - attemptsBefore;
  const submissionsRise = (await venueStats(venue)).submissions - submissionsBefore;
  // One venue call and one failed attempt per half-open trial (plus one trial in flight at an edge).
  expect(submissionsRise).toBeLessThanOrEqual(trials + 1);
  expect(attemptsRise).toBeLessThanOrEqual(trials + 1);
  expect(statuses.every((status) => status === 201)).toBe(true);
  expect(duringOutage.statuses.every((status) => status === 201)).toBe(true);
  const sorted = [...latencies].sort((a, b) => a - b);
  const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const max = sorted[sorted.length - 1] ?? 0;
  console.log(
    `[venue-outage] breaker open; over ${trials} half-open trials: venue submissions +${submissionsRise}, ` +
      `failed attempts +${attemptsRise}; POST /orders during the outage: ${statuses.length} x 201, ` +
      `latency p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
  );

  await configureVenue(venue, { outage: false });
  const all = [...healthy.ids, ...duringOutage.ids];
  await waitUntilPlaced(mongo.orders, all.length + statuses.length, {
    timeoutMs: 60_000,
    intervalMs: 500,
    message: "everything placed after the outage",
  });
  expect(await breakerState()).toBe(0);
  const stats = await venueStats(venue);
  expect(stats.orders).toBe(all.length + statuses.length);
  expect(stats.duplicates).toBe(0);
});
