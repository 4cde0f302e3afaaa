/**
 * Auto-pipelining (REDIS_AUTO_PIPELINING, on by default for each process's command connection) against a
 * real Redis: commands issued together leave in one write instead of one each, yet every
 * command keeps its own reply, its own error and its own timeout, the Lua scripts still load themselves
 * on first use, and a connection whose batch timed out goes on working.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Socket } from "node:net";
import { RedisPlacementState } from "../../src/adapters/placement-state.ts";
import { closeRedis, createRedisClient } from "../../src/adapters/redis.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import { loadConfig } from "../../src/config.ts";
import { redisCommand } from "../support/servers/redis.ts";
import { startRedis, type TestServer } from "../support/servers/servers.ts";
import { uniqueName } from "../support/wait-for.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

/** Reads the server performed (INFO stats), asked over a connection of its own. */
async function readsProcessed(): Promise<number> {
  const info = String(await redisCommand(server.port, "INFO", "stats"));
  const match = /total_reads_processed:(\d+)/.exec(info);
  if (!match) throw new Error(`no total_reads_processed in INFO stats: ${info.slice(0, 200)}`);
  return Number(match[1]);
}

/**
 * `count` SETs issued at once: the client's socket writes for them, and the reads the server performed.
 */
async function burst(autoPipelining: boolean, count: number): Promise<{ writes: number; reads: number }> {
  const redis = createRedisClient(server.url, { name: "pipelining-test", autoPipelining });
  try {
    await redis.ping(); // connected and past the handshake
    const socket = (redis as unknown as { stream: Socket }).stream;
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
    let writes = 0;
    socket.write = ((...args: unknown[]) => {
      writes += 1;
      return write(...args);
    }) as typeof socket.write;
    const key = uniqueName("burst");
    const before = await readsProcessed();
    await Promise.all(Array.from({ length: count }, (_, i) => redis.set(`${key}:${i}`, "v", "PX", 60_000)));
    // The INFO connection's own command is one read; the burst's are the rest.
    return { writes, reads: (await readsProcessed()) - before - 1 };
  } finally {
    await closeRedis(redis);
  }
}

test("the service's command connection pipelines by default; REDIS_AUTO_PIPELINING=false turns it off", () => {
  expect(loadConfig({}).REDIS_AUTO_PIPELINING).toBe("true");
  expect(loadConfig({ REDIS_AUTO_PIPELINING: "false" }).REDIS_AUTO_PIPELINING).toBe("false");
  expect(() => loadConfig({ REDIS_AUTO_PIPELINING: "yes" })).toThrow(/REDIS_AUTO_PIPELINING/);
  const on = createRedisClient(server.url, { name: "pipelining-test", autoPipelining: true });
  const off = createRedisClient(server.url, { name: "pipelining-test" });
  try {
    expect(on.options.enableAutoPipelining).toBe(true);
    expect(off.options.enableAutoPipelining).toBe(false);
  } finally {
    on.disconnect();
    off.disconnect();
  }
});

test("400 commands issued together leave in one write, not 400", async () => {
  const count = 400;
  const pipelined = await burst(true, count);
  const oneByOne = await burst(false, count);
  console.log(
    `${count} SETs: auto-pipelined ${pipelined.writes} write(s), ${pipelined.reads} server read(s); ` +
      `one write per command ${oneByOne.writes} writes, ${oneByOne.reads} server reads`,
  );
  expect(pipelined.writes).toBe(1);
  expect(oneByOne.writes).toBe(count);
  // About 24 KB: Redis reads at most 16 KB at a time.
  expect(pipelined.reads).toBeGreaterThan(0);
  expect(pipelined.reads).toBeLessThanOrEqual(8);
});

test("in one batch each command gets its own reply and its own error", async () => {
  const redis = createRedisClient(server.url, { name: "pipelining-test", autoPipelining: true });
  try {
    const key = uniqueName("own");
    const results = await Promise.allSettled([
      redis.set(`${key}:text`, "not a number"),
      redis.incr(`${key}:text`), // WRONGTYPE-like error: "value is not an integer"
      redis.incr(`${key}:counter`),
      redis.get(`${key}:text`),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason.message).toMatch(/not an integer/);
    expect((results[2] as PromiseFulfilledResult<number>).value).toBe(1);
    expect((results[3] as PromiseFulfilledResult<string>).value).toBe("not a number");
  } finally {
    await closeRedis(redis);
  }
});

test("a batch Redis does not answer times out command by command, and the connection goes on", async () => {
  const redis = createRedisClient(server.url, {
    name: "pipelining-test",
    autoPipelining: true,
    commandTimeoutMs: 200,
  });
  try {
    await redis.ping();
    const key = uniqueName("paused");
    await redisCommand(server.port, "CLIENT", "PAUSE", "1500", "ALL");
    const started = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => redis.set(`${key}:${i}`, "v", "PX", 60_000)),
    );
    const elapsedMs = performance.now() - started;
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/timed out/i);
    expect(elapsedMs).toBeLessThan(1_200); // each command's own 200 ms, not the pause's 1.5 s
    await redisCommand(server.port, "CLIENT", "UNPAUSE");
    // The paused batch is still owed its replies: later commands queue behind it, then go through.
    await expect(redis.set(`${key}:after`, "v", "PX", 60_000)).resolves.toBe("OK");
    await expect(redis.get(`${key}:after`)).resolves.toBe("v");
  } finally {
    await redisCommand(server.port, "CLIENT", "UNPAUSE").catch(() => {});
    await closeRedis(redis);
  }
});

test("the Lua scripts load themselves inside a batch on a fresh connection", async () => {
  const redis = createRedisClient(server.url, { name: "pipelining-test", autoPipelining: true });
  try {
    await redisCommand(server.port, "SCRIPT", "FLUSH");
    const keys = createRedisKeys(uniqueName("lua"), 1);
    const state = new RedisPlacementState(redis, keys, 60_000);
    const orders = Array.from({ length: 50 }, (_, i) => ({
      _id: `order-${i}`,
      partition: 0,
      type: "market" as const,
      side: "buy" as const,
      instrument: "US0378331005",
      limit_price_cents: null,
      quantity: 1,
    }));
    const results = await Promise.all(orders.map((order) => state.dispatch(order, "intake")));
    expect(results).toEqual(orders.map(() => "added"));
    expect(await redis.xlen(keys.placementStream(0))).toBe(50);
    const again = await Promise.all(orders.map((order) => state.dispatch(order, "intake")));
    expect(again).toEqual(orders.map(() => "tracked"));
  } finally {
    await closeRedis(redis);
  }
});
