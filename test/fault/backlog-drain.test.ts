/**
 * The deadlock proof (issue #9): a 2,000-order backlog drains with DEFAULT settings (ACTOR_CONCURRENCY
 * 256, MONGO_MAX_POOL_SIZE 32, MONGO_MAX_IN_FLIGHT 16, ...) on the default embedded store, with two actor
 * processes at once. FerretDB deadlocks for good when its clients hold more operations than its pool has
 * connections (test/support/servers/ferretdb.ts); 2 x 256 placements at once is where that would show. Every
 * order must be placed, each exactly once at the venue, and an `api` process on the same store must keep
 * answering POST /orders (201) and GET /health/ready (200) while the actors drain.
 *
 * Standalone Redis only: the deadlock is the embedded store's, not Redis's; a backlog drained by two
 * actor processes over 6 partitions on a Redis Cluster is test/integration/redis-cluster-placement.test.ts.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import {
  preloadOrders,
  spawnActors,
  spawnService,
  spawnVenue,
  statusCounts,
  venueStats,
  waitUntilPlaced,
} from "../support/placement.ts";
import { authorizationFor, isolatedEnv, mongoFor, orderBody, useServers } from "../support/system.ts";

setDefaultTimeout(180_000);

const servers = useServers();
const { cleanup } = servers;

const BACKLOG = 2_000;
/** The whole test's budget for the drain, inside the 180 s per-test timeout. */
const DEADLINE_MS = 170_000;
const PROBE_INTERVAL_MS = 250;
const PROBE_TIMEOUT_MS = 10_000;

interface Probe {
  kind: "POST /orders" | "GET /health/ready";
  status: number | "timeout" | "network error";
  ms: number;
  id?: string;
}

async function timed(kind: Probe["kind"], request: () => Promise<Response>): Promise<Probe> {
  const started = performance.now();
  try {
    const response = await request();
    const body = await response.text();
    const probe: Probe = { kind, status: response.status, ms: performance.now() - started };
    if (kind === "POST /orders" && response.status === 201)
      probe.id = (JSON.parse(body) as { id: string }).id;
    return probe;
  } catch (error) {
    const status = (error as Error).name === "TimeoutError" ? "timeout" : "network error";
    return { kind, status, ms: performance.now() - started };
  }
}

function latencyLine(probes: Probe[]): string {
  const sorted = probes.map((p) => p.ms).sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return `${probes.length} requests, p50 ${at(0.5).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms, max ${at(1).toFixed(1)} ms`;
}

test("a 2,000-order backlog drains on two actor processes with default settings; the API stays responsive", async () => {
  const testStarted = Date.now();
  // Default settings: isolatedEnv sets only the port, the URLs and the key prefix (and the in-process
  // exchange's latency and failure rate, unused here: the actors call the venue).
  const env = isolatedEnv(servers);
  console.log(`[backlog-drain] MongoDB-wire server: ${servers.mongo.kind}`);
  const venue = await spawnVenue(env, { failureRate: 0.1, latencyMs: 50 }, cleanup);
  const serviceEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());

  // The backlog as the API writes it (MongoDB, then the dispatch to Redis), with the default grace
  // before the sweeper may re-dispatch (DISPATCH_GRACE_MS 10 s).
  const ids = await preloadOrders(env, BACKLOG, { dispatchGraceMs: 10_000 });
  const api = await spawnService("api", serviceEnv);
  cleanup.add(() => api.process.kill());

  const drainStarted = performance.now();
  const actors = await Promise.all([spawnActors(serviceEnv, cleanup), spawnActors(serviceEnv, cleanup)]);
  const actorsListening = performance.now();

  // The API while the actors drain: one POST /orders and one GET /health/ready at a time.
  const probes: Probe[] = [];
  let draining = true;
  const prober = (async () => {
    while (draining) {
      probes.push(
        await timed("POST /orders", () =>
          fetch(`${api.baseUrl}/orders`, {
            method: "POST",
            headers: { "content-type": "application/json", ...authorizationFor(api.baseUrl) },
            body: JSON.stringify(orderBody({ quantity: 1 + (probes.length % 9) })),
            signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
          }),
        ),
        await timed("GET /health/ready", () =>
          fetch(`${api.opsUrl}/health/ready`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) }),
        ),
      );
      await Bun.sleep(PROBE_INTERVAL_MS);
    }
  })();

  let drainMs: number;
  try {
    await waitUntilPlaced(mongo.orders, BACKLOG, {
      ids,
      timeoutMs: Math.max(10_000, DEADLINE_MS - (Date.now() - testStarted)),
      intervalMs: 1_000,
      message: `${BACKLOG} backlog orders placed`,
    });
    drainMs = performance.now() - drainStarted;
  } catch (error) {
    const tails = actors.map((a, i) => `--- actors-${i + 1} ---\n${a.process.logs.slice(-3000)}`).join("\n");
    throw new Error(`${(error as Error).message}\n${tails}`);
  } finally {
    draining = false;
    await prober;
  }

  // The API's own orders are placed too; then the venue must hold each order once.
  const posted = probes.filter((p) => p.kind === "POST /orders");
  const health = probes.filter((p) => p.kind === "GET /health/ready");
  const probeIds = posted.flatMap((p) => (p.id ? [p.id] : []));
  await waitUntilPlaced(mongo.orders, BACKLOG + probeIds.length, {
    timeoutMs: 30_000,
    intervalMs: 500,
    message: "the API's orders placed too",
  });
  const stats = await venueStats(venue);
  const errorLines = actors.flatMap((a) =>
    a.process.logs.split("\n").filter((l) => l.includes('"level":"error"')),
  );
  console.log(
    `[backlog-drain] ${BACKLOG} orders drained in ${(drainMs / 1000).toFixed(1)} s ` +
      `(${((BACKLOG * 1000) / drainMs).toFixed(0)} orders/s; actors listening after ${((actorsListening - drainStarted) / 1000).toFixed(1)} s) ` +
      `on ${servers.mongo.kind}, 2 actor processes, default settings, venue 50 ms / 10% failures\n` +
      `[backlog-drain] venue: ${stats.orders} orders, ${stats.submissions} submissions, ${stats.failures} failures, ` +
      `${stats.duplicates} duplicates; statuses ${JSON.stringify(await statusCounts(mongo.orders))}; ` +
      `error lines in the actors' logs: ${errorLines.length}\n` +
      `[backlog-drain] while draining: POST /orders ${latencyLine(posted)} (statuses ${[...new Set(posted.map((p) => p.status))].join(",")}); ` +
      `GET /health/ready ${latencyLine(health)} (statuses ${[...new Set(health.map((p) => p.status))].join(",")})`,
  );
  if (errorLines.length > 0) console.log(`[backlog-drain] first error line: ${errorLines[0]}`);

  expect(posted.length).toBeGreaterThan(0);
  expect(posted.filter((p) => p.status !== 201)).toEqual([]);
  expect(health.filter((p) => p.status !== 200)).toEqual([]);
  // Each order once at the venue: as many orders there as placed in MongoDB, the backlog and the API's.
  expect(stats.orders).toBe(BACKLOG + probeIds.length);
  expect(await mongo.orders.countDocuments({ status: "placed" })).toBe(BACKLOG + probeIds.length);
});
