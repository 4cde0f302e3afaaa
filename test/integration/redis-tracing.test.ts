/**
 * ioredis's diagnostics tracing against a real Redis: the service's connections trace no command while
 * nobody subscribes to `ioredis:command` (under Bun 1.4 they traced every one: the runtime's
 * TracingChannel lacks `hasSubscribers`, src/support/tracing-channel.ts adds it), and a subscriber (an
 * APM agent) still receives every command's start and end.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import diagnostics from "node:diagnostics_channel";
import { closeRedis, createRedisConnection, type RedisConnection } from "../../src/adapters/redis.ts";
import { startRedis, type TestServer } from "../support/servers/servers.ts";
import { uniqueName } from "../support/wait-for.ts";

let server: TestServer;
let redis: RedisConnection;

const prototype = Object.getPrototypeOf(diagnostics.tracingChannel("test:probe")) as {
  tracePromise: (...args: unknown[]) => unknown;
};
const originalTracePromise = prototype.tracePromise;
let traced = 0;

beforeAll(async () => {
  server = await startRedis();
  redis = createRedisConnection({ url: server.url }, { name: "tracing-test", commandTimeoutMs: 2_000 });
  prototype.tracePromise = function (this: unknown, ...args: unknown[]) {
    traced += 1;
    return originalTracePromise.apply(this, args);
  };
});

afterAll(async () => {
  prototype.tracePromise = originalTracePromise;
  if (redis) await closeRedis(redis);
  await server?.stop();
});

test("without a subscriber no command is traced; a subscriber sees every command", async () => {
  const key = uniqueName("traced");
  traced = 0;
  for (let i = 0; i < 20; i++) await redis.set(key, String(i), "PX", 60_000);
  expect(await redis.get(key)).toBe("19");
  expect(traced).toBe(0);

  const started: string[] = [];
  let ended = 0;
  const subscriber = {
    start: (context: { command?: string }) => started.push(String(context.command)),
    end: () => {},
    asyncStart: () => {},
    asyncEnd: () => {
      ended += 1;
    },
    error: () => {},
  };
  const channel = diagnostics.tracingChannel("ioredis:command");
  channel.subscribe(subscriber);
  try {
    await redis.set(key, "a", "PX", 60_000);
    await redis.get(key);
  } finally {
    channel.unsubscribe(subscriber);
  }
  expect(started.map((name) => name.toLowerCase())).toEqual(["set", "get"]);
  expect(ended).toBe(2);
  expect(traced).toBe(2);

  traced = 0;
  await redis.set(key, "b", "PX", 60_000);
  expect(traced).toBe(0);
});
