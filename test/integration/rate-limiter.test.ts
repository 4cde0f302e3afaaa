/**
 * The per-account GCRA limiter against a real Redis and a real Redis Cluster (3 masters, 3 replicas):
 * a full burst at once then denials with a retry time no longer than one unit's refill, units coming
 * back at the rate, independent accounts, a key that expires once the burst is full again, all or
 * nothing for a cost of several units, and concurrent takes (several connections, one script each)
 * never granting more than the burst plus what refilled during the run. Redis errors reject.
 *
 * Timing: rates are either slow enough that no unit can come back during the assertions (0.5/s) or
 * the test waits for a transition with `waitFor` and generous bounds; no assertion on elapsed time.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { type RateLimitPolicy, RedisRateLimiter } from "../../src/adapters/rate-limiter.ts";
import {
  closeRedis,
  createRedisConnection,
  type RedisConnection,
  type RedisTarget,
} from "../../src/adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../../src/adapters/redis-keys.ts";
import {
  type RedisCluster,
  startRedis,
  startRedisCluster,
  type TestServer,
} from "../support/servers/servers.ts";
import { freePort, uniqueName, waitFor } from "../support/wait-for.ts";

setDefaultTimeout(30_000);

interface Fixture {
  limiter: RedisRateLimiter;
  client: RedisConnection;
  keys: RedisKeys;
  /** More clients on the same Redis (closed with the fixture). */
  connect(): RedisConnection;
}

/** Runs `body` with a limiter over a fresh key prefix; every client it opened is closed even on failure. */
async function withLimiter(
  target: RedisTarget,
  policy: RateLimitPolicy,
  body: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const clients: RedisConnection[] = [];
  const connect = () => {
    const client = createRedisConnection(target, { name: "rate-limiter-test", commandTimeoutMs: 5_000 });
    client.on("error", () => {});
    clients.push(client);
    return client;
  };
  try {
    const client = connect();
    const keys = createRedisKeys(uniqueName("rl"), 1);
    await body({ limiter: new RedisRateLimiter(client, keys, policy), client, keys, connect });
  } finally {
    await Promise.all(clients.map((client) => closeRedis(client)));
  }
}

/** The limiter's behaviour, the same on one Redis and on a cluster. */
function behaviour(target: () => RedisTarget) {
  test("a full burst is allowed at once, then requests are denied until a unit is back", async () => {
    const policy = { ratePerSecond: 0.5, burst: 3 };
    await withLimiter(target(), policy, async ({ limiter }) => {
      const allowed = [await limiter.take("acct"), await limiter.take("acct"), await limiter.take("acct")];
      expect(allowed.map((d) => [d.allowed, d.limit, d.remaining, d.retryAfterSeconds])).toEqual([
        [true, 3, 2, 0],
        [true, 3, 1, 0],
        [true, 3, 0, 0],
      ]);
      // A full burst takes burst / rate = 6 s to come back.
      for (const d of allowed) expect(d.resetSeconds).toBeWithin(0.001, 6.001);
      const denied = await limiter.take("acct");
      expect(denied).toMatchObject({ allowed: false, limit: 3, remaining: 0 });
      // The next unit is at most one emission interval (2 s) away, and not yet here.
      expect(denied.retryAfterSeconds).toBeGreaterThan(0);
      expect(denied.retryAfterSeconds).toBeLessThanOrEqual(2);
      expect(denied.resetSeconds).toBeLessThanOrEqual(6);
      expect(denied.resetSeconds).toBeGreaterThan(4);
      // A denial spends nothing: asking again is denied the same way.
      expect((await limiter.take("acct")).allowed).toBe(false);
    });
  });

  test("units come back at the rate, up to the full burst", async () => {
    const policy = { ratePerSecond: 50, burst: 5 };
    await withLimiter(target(), policy, async ({ limiter }) => {
      let granted = 0;
      for (let i = 0; i < 1_000 && (await limiter.take("acct")).allowed; i++) granted++;
      expect(granted).toBeGreaterThanOrEqual(5);
      // One unit returns within an emission interval (20 ms); a generous bound for a busy machine.
      await waitFor(async () => (await limiter.take("acct")).allowed, { timeoutMs: 5_000, intervalMs: 5 });
      // The whole burst returns (100 ms), and no more than the burst: it is spent, then denied.
      await waitFor(async () => (await limiter.take("acct", 0)).remaining === 5, {
        timeoutMs: 5_000,
        intervalMs: 20,
        message: "a full burst again",
      });
      const full = await limiter.take("acct", 0);
      expect(full).toMatchObject({ allowed: true, remaining: 5, resetSeconds: 0, retryAfterSeconds: 0 });
      const burst = await limiter.take("acct", 5);
      expect(burst).toMatchObject({ allowed: true, remaining: 0 });
    });
  });

  test("accounts are limited independently", async () => {
    const policy = { ratePerSecond: 0.5, burst: 2 };
    await withLimiter(target(), policy, async ({ limiter }) => {
      expect((await limiter.take("alice")).allowed).toBe(true);
      expect((await limiter.take("alice")).allowed).toBe(true);
      expect((await limiter.take("alice")).allowed).toBe(false);
      expect(await limiter.take("bob")).toMatchObject({ allowed: true, remaining: 1 });
      expect(await limiter.take("carol", 2)).toMatchObject({ allowed: true, remaining: 0 });
      expect((await limiter.take("alice")).allowed).toBe(false);
    });
  });

  test("a cost of several units is all or nothing; an impossible cost or policy is refused", async () => {
    const policy = { ratePerSecond: 0.5, burst: 5 };
    await withLimiter(target(), policy, async ({ client, keys, limiter }) => {
      expect(await limiter.take("acct", 3)).toMatchObject({ allowed: true, remaining: 2 });
      const denied = await limiter.take("acct", 3);
      expect(denied).toMatchObject({ allowed: false, remaining: 2 });
      // One more unit is needed: at most one emission interval away.
      expect(denied.retryAfterSeconds).toBeWithin(0.001, 2.001);
      expect(await limiter.take("acct", 2)).toMatchObject({ allowed: true, remaining: 0 });
      for (const cost of [6, -1, 1.5, Number.NaN]) {
        await expect(limiter.take("acct", cost)).rejects.toBeInstanceOf(RangeError);
      }
      for (const bad of [
        { ratePerSecond: 0, burst: 1 },
        { ratePerSecond: -1, burst: 1 },
        { ratePerSecond: Number.POSITIVE_INFINITY, burst: 1 },
        { ratePerSecond: 2_000_000, burst: 1 },
        { ratePerSecond: 1, burst: 0 },
        { ratePerSecond: 1, burst: 2.5 },
        { ratePerSecond: 1e-9, burst: 1e9 },
      ]) {
        expect(() => new RedisRateLimiter(client, keys, bad)).toThrow(RangeError);
      }
    });
  });

  test("the key expires when the burst is full again; reading a fresh account writes nothing", async () => {
    const policy = { ratePerSecond: 1, burst: 2 };
    await withLimiter(target(), policy, async ({ client, keys, limiter }) => {
      const key = keys.rateLimit("acct");
      expect(await limiter.take("acct", 0)).toMatchObject({ allowed: true, remaining: 2, resetSeconds: 0 });
      expect(await client.exists(key)).toBe(0);
      const spent = await limiter.take("acct", 2);
      expect(spent).toMatchObject({ allowed: true, remaining: 0 });
      // The expiry is the time to a full burst (2 s): never without one, never longer.
      const ttl = await client.pttl(key);
      expect(ttl).not.toBe(-1);
      expect(ttl).toBeLessThanOrEqual(2_000);
      expect(spent.resetSeconds).toBeLessThanOrEqual(2);
      await waitFor(async () => (await client.exists(key)) === 0, {
        timeoutMs: 10_000,
        message: "the rate-limit key expired",
      });
      expect(await limiter.take("acct")).toMatchObject({ allowed: true, remaining: 1 });
    });
  });

  test.each([
    { ratePerSecond: 10, burst: 20 },
    { ratePerSecond: 2_000, burst: 20 },
  ])(
    "200 concurrent takes over 4 connections never grant more than the burst plus the refill (%o)",
    async (policy) => {
      await withLimiter(target(), policy, async ({ keys, connect }) => {
        const limiters = Array.from({ length: 4 }, () => new RedisRateLimiter(connect(), keys, policy));
        // Connected (and, on a cluster, the slot map known) before the clock starts.
        await Promise.all(limiters.map((l) => l.take("warm-up", 0)));
        const started = performance.now();
        const decisions = await Promise.all(
          Array.from({ length: 200 }, (_, i) => limiters[i % limiters.length]!.take("acct")),
        );
        const elapsedSeconds = (performance.now() - started) / 1_000;
        const granted = decisions.filter((d) => d.allowed).length;
        // The burst is there from the start; at most rate x elapsed more came back during the run (the
        // server's first and last script ran within the client's measurement).
        expect(granted).toBeGreaterThanOrEqual(policy.burst);
        expect(granted).toBeLessThanOrEqual(policy.burst + Math.floor(policy.ratePerSecond * elapsedSeconds));
        for (const d of decisions) {
          expect(d.remaining).toBeGreaterThanOrEqual(0);
          expect(d.allowed ? d.retryAfterSeconds === 0 : d.retryAfterSeconds > 0).toBe(true);
        }
        console.log(
          `${granted} of 200 concurrent takes granted in ${(elapsedSeconds * 1_000).toFixed(0)} ms`,
        );
      });
    },
  );

  test("a Redis error rejects take (the key holds another type)", async () => {
    await withLimiter(target(), { ratePerSecond: 1, burst: 1 }, async ({ client, keys, limiter }) => {
      await client.hset(keys.rateLimit("acct"), "field", "value");
      await expect(limiter.take("acct")).rejects.toThrow(/WRONGTYPE/);
    });
  });
}

describe("on one Redis", () => {
  let redis: TestServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.stop());

  behaviour(() => ({ url: redis.url }));

  test("take rejects while Redis cannot be reached", async () => {
    const client = createRedisConnection(
      { url: `redis://127.0.0.1:${await freePort()}` },
      { name: "rate-limiter-test", commandTimeoutMs: 500, failFastWhenDisconnected: true },
    );
    client.on("error", () => {});
    try {
      const limiter = new RedisRateLimiter(client, createRedisKeys(uniqueName("rl"), 1), {
        ratePerSecond: 1,
        burst: 1,
      });
      await expect(limiter.take("acct")).rejects.toThrow();
    } finally {
      await closeRedis(client);
    }
  });
});

describe("on a Redis Cluster", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 90_000);
  afterAll(() => cluster?.stop(), 30_000);

  const target = (): RedisTarget => ({ url: "", clusterNodes: cluster.seeds });

  behaviour(target);

  test("accounts spread over slots, and each account's script runs on its own slot", async () => {
    const policy = { ratePerSecond: 0.5, burst: 1 };
    await withLimiter(target(), policy, async ({ client, keys, limiter }) => {
      const accounts = Array.from({ length: 30 }, (_, i) => `account-${i}`);
      const decisions = await Promise.all(accounts.map((account) => limiter.take(account)));
      expect(decisions.every((d) => d.allowed)).toBe(true);
      expect(
        (await Promise.all(accounts.map((account) => limiter.take(account)))).some((d) => d.allowed),
      ).toBe(false);
      const slots = await Promise.all(
        accounts.map((account) => client.cluster("KEYSLOT", keys.rateLimit(account)) as Promise<number>),
      );
      expect(new Set(slots).size).toBeGreaterThan(1);
      // The slot is the account's alone: the prefix does not take part in it.
      const other = createRedisKeys(uniqueName("other"), 1);
      expect(await client.cluster("KEYSLOT", other.rateLimit("account-0"))).toBe(slots[0]!);
    });
  });
});
