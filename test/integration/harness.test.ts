/** The fault helpers work for real: kill, restart, pause and resume real servers under real clients. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { createMongoClient, durableWrite } from "../../src/adapters/mongo.ts";
import { createRedisClient } from "../../src/adapters/redis.ts";
import {
  mongoUrlFor,
  postgresAvailable,
  startMongo,
  startRedis,
  type TestServer,
} from "../harness/servers.ts";
import { uniqueName, waitFor } from "../harness/wait-for.ts";

const TIMEOUT_MS = 1_000;

/**
 * The suite's MongoDB-wire server, and FerretDB on its own PostgreSQL (the server for runs with
 * thousands of orders) where that is not already the suite's. An external MongoDB (TEST_MONGO_URL) is
 * not the harness's to kill.
 */
const mongoServers: { name: string; start: () => Promise<TestServer> }[] = [
  { name: "MongoDB-wire server", start: () => startMongo() },
];
if (!Bun.which("mongod") && postgresAvailable() && process.env.TEST_FERRETDB_BACKEND !== "postgresql") {
  mongoServers.push({
    name: "MongoDB-wire server (FerretDB on PostgreSQL)",
    start: () => startMongo({ ferretBackend: "postgresql" }),
  });
}

describe.skipIf(Boolean(process.env.TEST_MONGO_URL)).each(mongoServers)("$name", ({ start }) => {
  let mongo: TestServer;
  beforeAll(async () => {
    mongo = await start();
  });
  afterAll(async () => {
    await mongo.stop();
  });

  // Three rounds: under Bun a write meeting a connection the kill reset can wait forever for a 'drain'
  // (about half of all kills here), and only the operation deadline of durableWrite ends it.
  test("a write fails fast while the server is dead, and the same client writes again after restart", async () => {
    const client = createMongoClient(mongoUrlFor(mongo, uniqueName("h")), TIMEOUT_MS);
    const collection = client.db().collection<{ _id: string }>("writes");
    try {
      await collection.insertOne({ _id: "before" }, durableWrite(TIMEOUT_MS));
      for (const round of [1, 2, 3]) {
        await mongo.kill();
        const started = performance.now();
        const failed = await collection.insertOne({ _id: `during-${round}` }, durableWrite(TIMEOUT_MS)).then(
          () => false,
          () => true,
        );
        const elapsed = performance.now() - started;
        expect(failed).toBe(true);
        expect(elapsed).toBeLessThan(TIMEOUT_MS * 4);

        await mongo.restart();
        await waitFor(
          () => collection.insertOne({ _id: `after-${round}` }, durableWrite(TIMEOUT_MS)).then(() => true),
          { timeoutMs: 20_000, message: `write after restart ${round}` },
        );
      }
      expect((await collection.find().toArray()).map((d) => d._id).sort()).toEqual([
        "after-1",
        "after-2",
        "after-3",
        "before",
      ]);
    } finally {
      await client.close();
    }
  });

  test("a paused server makes a write time out instead of hanging; resumed, it serves again", async () => {
    const client = createMongoClient(mongoUrlFor(mongo, uniqueName("p")), TIMEOUT_MS);
    const collection = client.db().collection<{ _id: string }>("writes");
    try {
      await collection.insertOne({ _id: "before" }, durableWrite(TIMEOUT_MS));
      mongo.pause();
      const started = performance.now();
      await expect(collection.insertOne({ _id: "paused" }, durableWrite(TIMEOUT_MS))).rejects.toThrow();
      expect(performance.now() - started).toBeLessThan(TIMEOUT_MS * 4);
      mongo.resume();
      await waitFor(
        () => collection.insertOne({ _id: "resumed" }, durableWrite(TIMEOUT_MS)).then(() => true),
        {
          timeoutMs: 20_000,
          message: "write after resume",
        },
      );
    } finally {
      mongo.resume();
      await client.close();
    }
  });
});

describe("redis-server", () => {
  let redis: TestServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  test("XADD fails fast while Redis is dead, and the same client appends again after restart", async () => {
    const client = createRedisClient(redis.url, {
      name: "harness-test",
      commandTimeoutMs: TIMEOUT_MS,
      failFastWhenDisconnected: true,
    });
    client.on("error", () => {});
    const stream = uniqueName("s");
    try {
      await waitFor(() => client.status === "ready", { message: "redis client ready" });
      await client.xadd(stream, "*", "n", "1");
      await redis.kill();
      const started = performance.now();
      await expect(client.xadd(stream, "*", "n", "2")).rejects.toThrow();
      expect(performance.now() - started).toBeLessThan(TIMEOUT_MS * 2);
      await redis.restart();
      await waitFor(() => client.xadd(stream, "*", "n", "3").then(() => true), {
        timeoutMs: 20_000,
        message: "XADD after restart",
      });
      // Redis keeps nothing on disk in tests: it came back empty, so only the new entry is there.
      expect(await client.xlen(stream)).toBe(1);
    } finally {
      client.disconnect();
    }
  });

  test("a paused Redis makes a command time out; resumed, it answers", async () => {
    const client = createRedisClient(redis.url, {
      name: "harness-pause",
      commandTimeoutMs: TIMEOUT_MS,
      failFastWhenDisconnected: true,
    });
    client.on("error", () => {});
    try {
      await waitFor(() => client.ping().then((r) => r === "PONG"), { message: "ping" });
      redis.pause();
      await expect(client.xadd(uniqueName("s"), "*", "n", "1")).rejects.toThrow(/timed out/i);
      redis.resume();
      await waitFor(() => client.ping().then((r) => r === "PONG"), {
        timeoutMs: 20_000,
        message: "ping after resume",
      });
    } finally {
      redis.resume();
      client.disconnect();
    }
  });

  test("a test process killed while its server is down still leaves no directory behind", async () => {
    const servers = new URL("../harness/servers.ts", import.meta.url).pathname;
    const script = `
      const { startRedis } = await import(${JSON.stringify(servers)});
      const redis = await startRedis();
      await redis.kill();
      console.log("DIR " + redis.dir);
      await Bun.sleep(60_000);`;
    const child = Bun.spawn(["bun", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let output = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      output += decoder.decode(chunk);
      if (output.includes("\n")) break;
    }
    const dir = output.match(/DIR (\S+)/)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir as string)).toBe(true);
    child.kill(9);
    await child.exited;
    await waitFor(() => !existsSync(dir as string), { timeoutMs: 10_000, message: `${dir} removed` });
  });

  test("stop removes the data directory and the process", async () => {
    const own = await startRedis();
    const dir = (own as unknown as { dir: string }).dir;
    expect(existsSync(dir)).toBe(true);
    await own.stop();
    expect(existsSync(dir)).toBe(false);
  });
});
