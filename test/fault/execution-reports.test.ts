/**
 * Execution reports end to end with real processes: the venue's feed, two gateways (one active, one
 * standby), the execution actors, the API and the placement actors. Every report the venue sends is
 * applied exactly once, whatever happens to the feed or the gateway: duplicates (a dropped connection
 * replays), a gap (healed by a resend), fills that arrive before the placement's acknowledgement, the
 * active gateway killed -9 mid-burst, and a 100,000-report burst.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { compareFills, fillsAgree, readAppliedFills } from "../../bench/chaos/fills.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import { executionBacklog, preloadPlacedOrders } from "../support/executions.ts";
import {
  Cleanup,
  type Env,
  metricValue,
  type PlacementRedis,
  placementEnv,
  REDIS_MODES,
  redisFor,
  spawnActors,
  spawnService,
  spawnVenue,
  useRedisMode,
} from "../support/placement.ts";
import {
  authorizationFor,
  mongoFor,
  orderBody,
  postOrder,
  type ServiceProcess,
  useServers,
} from "../support/system.ts";
import { burstFeed, configureFeed, disconnectFeed, venueFills, venueStats } from "../support/venue-admin.ts";
import { waitFor } from "../support/wait-for.ts";

const servers = useServers();
const { cleanup } = servers;
// Each test's processes stop when it ends: left running (sweeps, heartbeats, gauges) they would slow
// the tests after them on this 2-core machine.
const processes = new Cleanup();
afterEach(() => processes.run(), 60_000);

interface System {
  env: Env;
  venue: ServiceProcess;
  api: ServiceProcess;
  gateways: ServiceProcess[];
  executions: ServiceProcess;
}

async function startSystem(overrides: Env, venueLatencyMs: number, redis?: PlacementRedis): Promise<System> {
  const base = placementEnv(
    servers,
    {
      EXCHANGE_FILL_DELAY_MS: "20",
      GATEWAY_LEASE_MS: "2000",
      GATEWAY_RECONNECT_BASE_MS: "50",
      GATEWAY_RECONNECT_MAX_MS: "500",
      ...overrides,
    },
    redis ? { redis } : {},
  );
  const venue = await spawnVenue(base, { failureRate: 0, latencyMs: venueLatencyMs }, processes);
  const env = { ...base, EXCHANGE_URL: venue.baseUrl };
  const spawn = async (kind: "api" | "executions" | "gateway", name: string) => {
    const service = await spawnService(kind, env, { name });
    processes.add(() => service.process.kill());
    return service;
  };
  const [api, , executions, gatewayA, gatewayB] = await Promise.all([
    spawn("api", "api"),
    spawnActors(env, processes),
    spawn("executions", "executions"),
    spawn("gateway", "gateway-a"),
    spawn("gateway", "gateway-b"),
  ]);
  return { env, venue, api, executions, gateways: [gatewayA, gatewayB] };
}

async function submit(api: ServiceProcess, bodies: Record<string, unknown>[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < bodies.length; i += 25) {
    const responses = await Promise.all(bodies.slice(i, i + 25).map((body) => postOrder(api.baseUrl, body)));
    for (const response of responses) {
      expect(response.status).toBe(201);
      ids.push(((await response.json()) as { id: string }).id);
    }
  }
  return ids;
}

/**
 * Waits until the venue finished every order of `ids` (nothing open), every report it generated is
 * stored once, and the fills agree; returns the verdict.
 */
async function untilFillsAgree(system: System, ids: readonly string[], timeoutMs: number) {
  const { client, db } = mongoFor(system.env);
  const probe = new Cleanup();
  const { redis } = redisFor(system.env, probe);
  const keys = createRedisKeys(system.env.REDIS_KEY_PREFIX as string, 1, 2);
  try {
    let verdict: ReturnType<typeof compareFills> | undefined;
    await waitFor(
      async () => {
        const [venue, stats] = await Promise.all([venueFills(system.venue), venueStats(system.venue)]);
        if (!ids.every((id) => venue.orders[id]?.leaves_qty === 0)) return false;
        // Cheap first: the execution actors have nothing left to read or acknowledge.
        if (((await executionBacklog(redis, keys)) ?? 1) > 0) return false;
        verdict = compareFills(venue.orders, await readAppliedFills(db));
        const stored = await db.collection("executions").countDocuments();
        return fillsAgree(verdict) && stored === stats.execution_reports;
      },
      { timeoutMs, intervalMs: 250, message: "applied fills to agree with the venue's" },
    ).catch((error) => {
      throw new Error(`${(error as Error).message}: ${JSON.stringify(verdict).slice(0, 2000)}`);
    });
    return verdict as ReturnType<typeof compareFills>;
  } finally {
    await probe.run();
    await client.close();
  }
}

async function untilPlaced(system: System, ids: readonly string[]): Promise<void> {
  const { client, orders } = mongoFor(system.env);
  try {
    await waitFor(
      async () => (await orders.countDocuments({ _id: { $in: [...ids] }, status: "placed" })) === ids.length,
      { timeoutMs: 30_000, message: "orders placed" },
    );
  } finally {
    await client.close();
  }
}

async function activeGateway(system: System): Promise<ServiceProcess> {
  return waitFor(
    async () => {
      for (const gateway of system.gateways)
        if ((await metricValue(gateway, "executions_gateway_active").catch(() => 0)) === 1) return gateway;
      return null;
    },
    { timeoutMs: 15_000, intervalMs: 100, message: "a gateway to be active" },
  );
}

describe.each(REDIS_MODES)("execution reports, real processes, Redis %s", (mode) => {
  const redisMode = useRedisMode(mode, cleanup);

  test("each report is applied once: fills before the acknowledgement, a gap healed by a resend, a dropped feed", async () => {
    // The venue records an order halfway through its 400 ms latency and sends the first fill 20 ms
    // later: fills arrive well before the placement actor writes `placed`.
    const system = await startSystem(
      { EXCHANGE_FILLS_PER_ORDER: "3", EXCHANGE_LIMIT_UNFILLED_RATE: "0.5" },
      400,
      redisMode,
    );
    const active = await activeGateway(system);
    // The client's view: every update of its orders over the WebSocket, from the start.
    const frames: { order_id: string; status: string; filled_quantity: number }[] = [];
    const socket = new WebSocket(`${system.api.baseUrl.replace("http", "ws")}/orders/events`, {
      headers: authorizationFor(system.api.baseUrl),
    } as unknown as string[]);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    socket.onmessage = (message) => frames.push(JSON.parse(String(message.data)));
    const bodies = Array.from({ length: 120 }, (_, i) =>
      i % 2 === 0
        ? orderBody({ quantity: 3 + (i % 7) })
        : orderBody({ type: "limit", limit_price: "12.34", quantity: 4 + (i % 5) }),
    );
    const first = await submit(system.api, bodies.slice(0, 60));
    // A hole of 5 reports in the live feed: the gateway finds it and asks for a resend.
    await configureFeed(system.venue, { drop_next: 5 });
    const second = await submit(system.api, bodies.slice(60, 100));
    await waitFor(async () => ((await metricValue(active, "executions_sequence_gaps_total")) ?? 0) >= 1, {
      timeoutMs: 15_000,
      message: "the gateway to find the hole",
    });
    // Every connection dropped: the gateway logs on again from the last appended number; what the
    // venue sends twice is recognised as a duplicate.
    expect(await disconnectFeed(system.venue)).toBeGreaterThanOrEqual(1);
    const third = await submit(system.api, bodies.slice(100));
    const ids = [...first, ...second, ...third];

    const verdict = await untilFillsAgree(system, ids, 60_000);
    expect(verdict.orders).toBe(ids.length);
    expect(verdict.venueShares).toBe(verdict.appliedShares);
    expect(await metricValue(active, "executions_sequence_gaps_total")).toBeGreaterThanOrEqual(1);
    const reconnects = await Promise.all(
      system.gateways.map((g) => metricValue(g, "executions_feed_reconnects_total", { reason: "closed" })),
    );
    expect(reconnects.reduce((sum: number, n) => sum + (n ?? 0), 0)).toBeGreaterThanOrEqual(1);
    // Fills before the acknowledgement did not make the placement's final write a conflict.
    const { client, orders } = mongoFor(system.env);
    try {
      const stored = await orders.find({ _id: { $in: ids } }).toArray();
      expect(stored.every((o) => typeof o.venue_order_id === "string" && o.placed_at instanceof Date)).toBe(
        true,
      );
      expect(new Set(stored.map((o) => o.status))).not.toContain("accepted");
    } finally {
      await client.close();
    }
    expect(
      (await metricValue(system.executions, "executions_reports_applied_total", { outcome: "overfill" })) ??
        0,
    ).toBe(0);
    // Every order's client heard of its acceptance and of its final fill state as it happened.
    const { orders: atVenue } = await venueFills(system.venue);
    await waitFor(
      () =>
        ids.every((id) => {
          const heard = frames.filter((f) => f.order_id === id);
          return (
            heard.some((f) => f.status === "accepted") &&
            heard.some((f) => f.filled_quantity === atVenue[id]?.cum_qty && f.status !== "accepted")
          );
        }),
      { timeoutMs: 10_000, message: "every order's events on the client's WebSocket" },
    );
    socket.close();
  }, 120_000);
});

// Standalone Redis only: the gateway's lease and its appends are one slot in either mode (ADR 0006),
// and the feed test above covers the cluster.
describe("execution reports, gateway failover and a burst", () => {
  test("the active gateway killed -9 mid-burst: the standby takes over, no report lost or applied twice", async () => {
    const system = await startSystem({ EXCHANGE_FILLS_PER_ORDER: "0" }, 5);
    const ids = await submit(
      system.api,
      Array.from({ length: 100 }, () => orderBody({ quantity: 100 })),
    );
    await untilPlaced(system, ids);
    const first = await activeGateway(system);
    expect(await burstFeed(system.venue, { reports: 10_000, per_second: 2_500 })).toBe(10_000);
    await Bun.sleep(1_500);
    const killedAt = Date.now();
    first.process.signal("SIGKILL");
    system.gateways = system.gateways.filter((g) => g !== first);
    await activeGateway(system);
    const takeoverMs = Date.now() - killedAt;
    const verdict = await untilFillsAgree(system, ids, 90_000);
    console.log(
      `[gateway takeover] standby active ${takeoverMs} ms after kill -9 (lease 2,000 ms); ${verdict.appliedShares} of ${verdict.venueShares} shares applied once`,
    );
    expect(verdict.appliedShares).toBe(10_000);
  }, 150_000);

  test("the venue's feed unreachable (venue paused): the active gateway says it is not logged on, then logs on again and reads on", async () => {
    const system = await startSystem({ EXCHANGE_FILLS_PER_ORDER: "1" }, 5);
    const gateway = await activeGateway(system);
    const loggedOn = () => metricValue(gateway, "executions_feed_logged_on");
    await waitFor(async () => (await loggedOn()) === 1, { timeoutMs: 15_000, message: "logged on" });

    // Paused, the venue sends no heartbeat: the gateway drops the connection as stale (5 s) and its
    // new one gets no logon answer.
    system.venue.process.signal("SIGSTOP");
    try {
      await waitFor(async () => (await loggedOn()) === 0, {
        timeoutMs: 20_000,
        intervalMs: 250,
        message: "executions_feed_logged_on 0 while the venue is paused",
      });
      expect(await metricValue(gateway, "executions_gateway_active")).toBe(1);
    } finally {
      system.venue.process.signal("SIGCONT");
    }
    await waitFor(async () => (await loggedOn()) === 1, {
      timeoutMs: 20_000,
      intervalMs: 250,
      message: "logged on again after the venue resumed",
    });

    const ids = await submit(
      system.api,
      Array.from({ length: 20 }, () => orderBody({ quantity: 10 })),
    );
    const verdict = await untilFillsAgree(system, ids, 60_000);
    expect(verdict.appliedShares).toBeGreaterThan(0);
    expect(verdict.appliedShares).toBe(verdict.venueShares);
  }, 90_000);

  test("MongoDB paused while reports arrive: nothing is dead-lettered, every report is applied once after", async () => {
    // Entries are reclaimed after 2 s idle and dead-lettered after 2 deliveries: without the actors'
    // own retries, a pause of 8 s would give up valid reports.
    const system = await startSystem(
      {
        EXCHANGE_FILLS_PER_ORDER: "0",
        MONGO_TIMEOUT_MS: "1000",
        REQUEST_DEADLINE_MS: "5000",
        BREAKER_TIMEOUT_MS: "1000",
        CLAIM_TIMEOUT_MS: "2000",
        RECLAIM_INTERVAL_MS: "250",
        MAX_DELIVERIES: "2",
      },
      5,
    );
    const ids = await submit(
      system.api,
      Array.from({ length: 40 }, () => orderBody({ quantity: 50 })),
    );
    await untilPlaced(system, ids);
    await activeGateway(system);
    expect(await burstFeed(system.venue, { reports: 2_000, per_second: 500 })).toBe(2_000);
    await Bun.sleep(1_000);
    servers.mongo.pause();
    await Bun.sleep(8_000);
    servers.mongo.resume();
    const verdict = await untilFillsAgree(system, ids, 90_000);
    expect(verdict.appliedShares).toBe(2_000);
    const probe = new Cleanup();
    try {
      const { redis } = redisFor(system.env, probe);
      const keys = createRedisKeys(system.env.REDIS_KEY_PREFIX as string, 1, 2);
      expect(await redis.xlen(keys.executionDeadLetterStream)).toBe(0);
    } finally {
      await probe.run();
    }
  }, 150_000);

  test("Redis restarted empty with reports appended but not applied: the gateway replays them", async () => {
    const system = await startSystem({ EXCHANGE_FILLS_PER_ORDER: "0" }, 5);
    const ids = await submit(
      system.api,
      Array.from({ length: 20 }, () => orderBody({ quantity: 50 })),
    );
    await untilPlaced(system, ids);
    await activeGateway(system);
    // The execution actors stopped: every report waits on the streams when Redis loses them.
    system.executions.process.signal("SIGSTOP");
    expect(await burstFeed(system.venue, { reports: 1_000, per_second: 2_000 })).toBe(1_000);
    await waitFor(
      async () =>
        (await Promise.all(system.gateways.map((g) => metricValue(g, "executions_last_sequence")))).some(
          (seq) => seq === 1_000,
        ),
      { timeoutMs: 20_000, message: "every report appended" },
    );
    await servers.redis.restart({ empty: true });
    system.executions.process.signal("SIGCONT");
    const verdict = await untilFillsAgree(system, ids, 90_000);
    expect(verdict.appliedShares).toBe(1_000);
  }, 150_000);

  test("a 100,000-report burst is ingested and applied once each", async () => {
    // Only what a burst needs: the venue, a gateway and the execution actors, over orders placed already.
    const env = placementEnv(servers, { EXCHANGE_FILLS_PER_ORDER: "0" });
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 0 }, processes);
    const withVenue = { ...env, EXCHANGE_URL: venue.baseUrl };
    // 50 orders of 2,000 shares: a batch of 2,000 reports touches at most 50 orders (50 summary writes).
    const ids = await preloadPlacedOrders(withVenue, venue, 50, 2_000);
    const [gateway, executions] = await Promise.all([
      spawnService("gateway", withVenue, { name: "gateway" }),
      spawnService("executions", withVenue, { name: "executions" }),
    ]);
    processes.add(() => gateway.process.kill());
    processes.add(() => executions.process.kill());
    const system = { env: withVenue, venue, api: venue, executions, gateways: [gateway] };
    await activeGateway(system);
    const started = Date.now();
    expect(await burstFeed(venue, { reports: 100_000, per_second: 20_000 })).toBe(100_000);
    const verdict = await untilFillsAgree(system, ids, 240_000);
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `100,000-report burst (20,000/s offered): all applied after ${seconds.toFixed(1)} s = ${Math.round(100_000 / seconds)} reports/s end to end`,
    );
    expect(verdict.appliedShares).toBe(100_000);
    expect(verdict.orders).toBe(ids.length);
  }, 300_000);
});
