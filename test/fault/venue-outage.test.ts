/**
 * The venue down for longer than the breaker's reset timeout (docs/ARCHITECTURE.md guarantee 3): the
 * breaker opens, the actors stop taking entries (no attempts burned, no retry storm: only the half-open
 * trials reach the venue), POST /orders keeps answering 201, and once the venue is back everything
 * drains.
 *
 * Both Redis modes (test/support/placement.ts's `useRedisMode`): standalone with one actor process; on a
 * Redis Cluster (6 partitions over 3 masters) with two, each with its own breaker: both open, and the
 * venue sees at most the half-open trials of both.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  configureVenue,
  metricValue,
  placementEnv,
  REDIS_MODES,
  spawnActors,
  spawnService,
  spawnVenue,
  submitOrders,
  useRedisMode,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { mongoFor, orderBody, postOrder, type ServiceProcess, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

const RESET_MS = 1500;

/** The sum of one metric over the actor processes (a missing sample counts 0). */
async function sumOver(actors: ServiceProcess[], name: string, labels: Record<string, string> = {}) {
  let sum = 0;
  for (const actor of actors) sum += (await metricValue(actor, name, labels)) ?? 0;
  return sum;
}

describe.each(REDIS_MODES)("Redis %s", (mode) => {
  const redis = useRedisMode(mode, cleanup);

  test("venue outage: breaker opens, actors stop pulling, intake answers 201, all drains afterwards", async () => {
    const env = placementEnv(
      servers,
      {
        BREAKER_RESET_TIMEOUT_MS: String(RESET_MS),
        BREAKER_VOLUME_THRESHOLD: "5",
        BREAKER_ERROR_THRESHOLD_PERCENT: "50",
        CLAIM_TIMEOUT_MS: "5000",
        BREAKER_TIMEOUT_MS: "2000",
        RETRY_BASE_DELAY_MS: "100",
        RETRY_MAX_DELAY_MS: "1000",
        DISPATCH_GRACE_MS: "2000",
        SWEEP_INTERVAL_MS: "250",
      },
      { redis },
    );
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 20 }, cleanup);
    const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
    const [api, ...actors] = await Promise.all([
      spawnService("api", actorEnv),
      ...Array.from({ length: redis.actorProcesses }, () => spawnActors(actorEnv, cleanup)),
    ]);
    cleanup.add(() => api.process.kill());
    const mongo = mongoFor(env);
    cleanup.add(() => mongo.client.close());
    /** Every actor process's breaker state (0 closed, 1 half-open, 2 open). */
    const breakerStates = () =>
      Promise.all(actors.map((actor) => metricValue(actor, "exchange_breaker_state")));
    const allBreakers = async (state: number) => (await breakerStates()).every((s) => s === state);
    const halfOpens = () => sumOver(actors, "exchange_breaker_transitions_total", { to: "half-open" });

    const healthy = await submitOrders(api.baseUrl, 10, 5);
    await waitUntilPlaced(mongo.orders, 10, {
      ids: healthy.ids,
      timeoutMs: 30_000,
      message: "orders placed before the outage",
    });
    expect(await breakerStates()).toEqual(actors.map(() => 0));

    await configureVenue(venue, { outage: true });
    const duringOutage = await submitOrders(api.baseUrl, 30, 5);
    await waitFor(() => allBreakers(2), { timeoutMs: 30_000, message: "every breaker open" });
    // Let what was already taken before the breakers opened finish failing.
    await waitFor(
      async () =>
        (await allBreakers(2)) &&
        (await sumOver(actors, "actor_in_flight_messages", { actor: "placement" })) === 0,
      { timeoutMs: 30_000, message: "every breaker open and nothing in flight" },
    );

    // The observation window: at least two reset timeouts, so that half-open trials happen in it.
    const failedAttempts = () => sumOver(actors, "placement_outcomes_total", { outcome: "retry" });
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
        return (await halfOpens()) - halfOpensBefore >= 2 * actors.length;
      },
      {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: "two half-open trials per actor process during the outage",
      },
    );
    const trials = (await halfOpens()) - halfOpensBefore;
    const attemptsRise = (await failedAttempts()) - attemptsBefore;
    const submissionsRise = (await venueStats(venue)).submissions - submissionsBefore;
    // One venue call and one failed attempt per half-open trial (plus, per process, one trial in
    // flight at an edge of the window).
    expect(submissionsRise).toBeLessThanOrEqual(trials + actors.length);
    expect(attemptsRise).toBeLessThanOrEqual(trials + actors.length);
    expect(statuses.every((status) => status === 201)).toBe(true);
    expect(duringOutage.statuses.every((status) => status === 201)).toBe(true);
    const sorted = [...latencies].sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const max = sorted[sorted.length - 1] ?? 0;
    const processes =
      actors.length > 1 ? ` (${actors.length} actor processes, ${redis.partitions} partitions)` : "";
    console.log(
      `${redis.tag("venue-outage")} breaker open${processes}; over ${trials} half-open trials: venue submissions +${submissionsRise}, ` +
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
    // A breaker closes on its first successful trial. With two processes, one may have drained
    // everything while the other's breaker waited out its reset timeout: that one is still open or
    // half-open with nothing to try, and closes on the first new order it takes.
    const after: string[] = [];
    await waitFor(
      async () => {
        if (await allBreakers(0)) return true;
        const posted = await submitOrders(api.baseUrl, 1, 1);
        expect(posted.statuses).toEqual([201]);
        after.push(...posted.ids);
        return false;
      },
      { timeoutMs: 30_000, intervalMs: 250, message: "every breaker closed again" },
    );
    const expected = all.length + statuses.length + after.length;
    await waitUntilPlaced(mongo.orders, expected, {
      timeoutMs: 30_000,
      intervalMs: 250,
      message: "the orders posted after the outage placed too",
    });
    expect(await breakerStates()).toEqual(actors.map(() => 0));
    const stats = await venueStats(venue);
    expect(stats.orders).toBe(expected);
    expect(stats.duplicates).toBe(0);
  });
});
