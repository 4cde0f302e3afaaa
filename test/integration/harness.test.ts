/** The fault helpers work for real: kill, restart, pause and resume real servers under real clients. */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { Cluster } from "ioredis";
import { createMongoClient, durableWrite } from "../../src/adapters/mongo/client.ts";
import { createRedisClient } from "../../src/adapters/redis.ts";
import { redisCommand, redisCommands } from "../support/servers/redis.ts";
import {
  defaultFerretBackend,
  type FerretOnPostgres,
  mongoUrlFor,
  postgresAvailable,
  type RedisCluster,
  startMongo,
  startRedis,
  startRedisCluster,
  type TestServer,
} from "../support/servers/servers.ts";
import { uniqueName, waitFor } from "../support/wait-for.ts";

const TIMEOUT_MS = 1_000;
// Restarts of real servers (FerretDB on SQLite the slowest) take longer than bun's 5 s default when the
// file runs alone, without the suite's --timeout.
setDefaultTimeout(60_000);

/** The service's MongoDB client (its timeouts and stuck-monitor restarts), with a small pool. */
const mongoClient = (url: string, timeoutMs = TIMEOUT_MS) =>
  createMongoClient(url, { timeoutMs, maxPoolSize: 8 });

/** FerretDB is the suite's store (no mongod, no external MongoDB) and the default is PostgreSQL. */
const ferretOnPostgresDefault =
  !process.env.TEST_MONGO_URL && !Bun.which("mongod") && defaultFerretBackend() === "postgresql";

/**
 * The suite's MongoDB-wire server, and FerretDB's other backend where it can run (SQLite, the
 * fallback, when the default is PostgreSQL; PostgreSQL where installed when SQLite was asked for). An
 * external MongoDB (TEST_MONGO_URL) is not the harness's to kill.
 */
const mongoServers: { name: string; start: () => Promise<TestServer> }[] = [
  { name: "MongoDB-wire server", start: () => startMongo() },
];
if (!Bun.which("mongod")) {
  if (defaultFerretBackend() === "postgresql") {
    mongoServers.push({
      name: "MongoDB-wire server (FerretDB on SQLite)",
      start: () => startMongo({ ferretBackend: "sqlite" }),
    });
  } else if (postgresAvailable()) {
    mongoServers.push({
      name: "MongoDB-wire server (FerretDB on PostgreSQL)",
      start: () => startMongo({ ferretBackend: "postgresql" }),
    });
  }
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
    const client = mongoClient(mongoUrlFor(mongo, uniqueName("h")));
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
    const client = mongoClient(mongoUrlFor(mongo, uniqueName("p")));
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
    const servers = new URL("../support/servers/servers.ts", import.meta.url).pathname;
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

describe.skipIf(!ferretOnPostgresDefault)("the default store: FerretDB on PostgreSQL", () => {
  let mongo: FerretOnPostgres;
  beforeAll(async () => {
    mongo = (await startMongo()) as FerretOnPostgres;
  });
  afterAll(async () => {
    await mongo?.stop();
  });

  test("new collections get GIN indexes on _id and status, and an updateOne by _id uses them", async () => {
    expect(mongo.kind).toBe("ferretdb-postgresql");
    const database = uniqueName("gin");
    const client = mongoClient(mongoUrlFor(mongo, database), 5_000);
    const orders = client.db().collection<{ _id: string; status: string; n: number }>("orders");
    try {
      await orders.insertMany(
        Array.from({ length: 3_000 }, (_, n) => ({
          _id: `o${n}`,
          status: n % 100 ? "placed" : "accepted",
          n,
        })),
      );
      // FerretDB maps the database to a schema and the collection to a table named orders_<hash>.
      const table = await mongo.postgres.psql(
        `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = '${database}' AND c.relkind = 'r' AND c.relname LIKE 'orders%'`,
      );
      expect(table).toMatch(/^[a-z0-9_]+\.orders_[0-9a-f]{8}$/);
      const indexes = (
        await mongo.postgres.psql(
          `SELECT indexdef FROM pg_indexes WHERE format('%I.%I', schemaname, tablename) = '${table}'`,
        )
      ).split("\n");
      for (const field of ["_id", "status"]) {
        expect(indexes.some((d) => d.includes("USING gin") && d.includes(`'${field}'::text`))).toBe(true);
      }
      // The query FerretDB sends for {_id: "o5"}, with the value bound (plan_cache_mode=force_custom_plan).
      const plan = await mongo.postgres.psql(
        `EXPLAIN SELECT _jsonb FROM ${table} WHERE _jsonb->'_id' @> '"o5"'`,
      );
      expect(plan).toMatch(/Bitmap Index Scan on \S+_id_gin/);

      const scans = () =>
        mongo.postgres
          .psql(
            `SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes
             WHERE format('%I.%I', schemaname, relname) = '${table}' AND indexrelname LIKE '%\\_id\\_gin'`,
          )
          .then(Number);
      const before = await scans();
      const started = performance.now();
      for (let n = 0; n < 200; n++) {
        const result = await orders.updateOne({ _id: `o${n * 13}` }, { $inc: { n: 1 } });
        expect(result.modifiedCount).toBe(1);
      }
      console.log(
        `200 updateOne({_id}) at 3,000 documents: ${(performance.now() - started).toFixed(0)} ms on FerretDB/PostgreSQL`,
      );
      // A backend publishes its statistics at a transaction a second after its last report (an idle
      // one only after 10 s): keep FerretDB's connections busy with more look-ups by _id meanwhile.
      await waitFor(
        async () => {
          await orders.updateOne({ _id: "o1" }, { $inc: { n: 1 } });
          return (await scans()) > before;
        },
        { timeoutMs: 15_000, intervalMs: 200, message: "idx_scan of the _id GIN index grew" },
      );
      expect((await orders.findOne({ _id: "o13" }))?.n).toBe(14);
    } finally {
      await client.close();
    }
  });

  test("a test process killed while FerretDB on PostgreSQL starts, or once it runs, leaves nothing behind", async () => {
    const servers = new URL("../support/servers/servers.ts", import.meta.url).pathname;
    const script = `
      const { startMongo } = await import(${JSON.stringify(servers)});
      await startMongo();
      console.log("UP");
      await Bun.sleep(60_000);`;
    for (const moment of ["initdb", "up"] as const) {
      // A TMPDIR of its own (open to the postgres user) holds every directory the child makes.
      const tmp = (await Bun.$`mktemp -d /tmp/orders-harness-kill-XXXXXX`.text()).trim();
      await Bun.$`chmod 755 ${tmp}`;
      try {
        const child = Bun.spawn(["bun", "-e", script], {
          env: { ...process.env, TMPDIR: tmp },
          stdio: ["ignore", "pipe", "inherit"],
        });
        if (moment === "initdb") {
          await waitFor(
            async () =>
              (await Bun.$`ls -d ${tmp}/orders-test-postgres-*/data`.nothrow().quiet()).exitCode === 0,
            {
              timeoutMs: 20_000,
              intervalMs: 10,
              message: "initdb started",
            },
          );
        } else {
          const reader = child.stdout.getReader();
          let output = "";
          while (!output.includes("UP")) {
            const { value, done } = await reader.read();
            if (done) break;
            output += new TextDecoder().decode(value);
          }
          expect(output).toContain("UP");
        }
        child.kill(9);
        await child.exited;
        await waitFor(async () => (await Bun.$`ls -A ${tmp}`.text()).trim() === "", {
          timeoutMs: 15_000,
          intervalMs: 100,
          message: `nothing left in ${tmp} (killed at ${moment})`,
        });
        await waitFor(async () => (await Bun.$`pgrep -f ${tmp}`.nothrow().quiet()).exitCode !== 0, {
          timeoutMs: 10_000,
          message: `no process of ${tmp} left (killed at ${moment})`,
        });
      } finally {
        await Bun.$`rm -rf ${tmp}`.nothrow().quiet();
      }
    }
  });
});

describe("Redis Cluster", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const client = () => {
    const [host = "", port = ""] = cluster.nodes[0]?.split(":") ?? [];
    const redis = new Cluster([{ host, port: Number(port) }], {
      slotsRefreshTimeout: 1_000,
      redisOptions: { commandTimeout: 1_000 },
    });
    redis.on("error", () => {});
    return redis;
  };

  test("comes up with 3 masters and 3 replicas and serves keys of every slot range", async () => {
    expect(cluster.nodes).toHaveLength(6);
    expect(cluster.seeds.split(",")).toEqual(cluster.nodes);
    const masters = await cluster.masters();
    expect(masters).toHaveLength(3);
    for (const master of masters) {
      expect(await cluster.replicasOf(Number(master.split(":")[1]))).toHaveLength(1);
    }
    const redis = client();
    try {
      const keys = Array.from({ length: 30 }, (_, n) => uniqueName(`k${n}`));
      for (const key of keys) await redis.set(key, key);
      for (const key of keys) expect(await redis.get(key)).toBe(key);
      const slots = new Set(await Promise.all(keys.map((key) => redis.cluster("KEYSLOT", key))));
      expect(slots.size).toBeGreaterThan(1);
      // Every master holds some of them: the keys were spread over the three slot ranges.
      for (const master of masters) {
        expect(Number(await redisCommand(Number(master.split(":")[1]), "DBSIZE"))).toBeGreaterThan(0);
      }
      // A hash tag keeps keys of one order on one slot (what placement partitions rely on).
      await redis.set("{orders:7}:a", "1");
      await redis.set("{orders:7}:b", "2");
      expect(await redis.mget("{orders:7}:a", "{orders:7}:b")).toEqual(["1", "2"]);
    } finally {
      redis.disconnect();
    }
  });

  test("a master killed -9 is replaced by its replica, and its keys and slots are served again", async () => {
    const redis = client();
    try {
      const key = uniqueName("failover");
      await redis.set(key, "before");
      const slot = Number(await redis.cluster("KEYSLOT", key));
      const owner = (await cluster.clusterNodes()).find(
        (n) =>
          n.masterId === undefined &&
          n.slots.some((range) => {
            const [from = -1, to = from] = range.split("-").map(Number);
            return slot >= from && slot <= to;
          }),
      );
      expect(owner).toBeDefined();
      const masterPort = owner!.port;
      const [replica] = await cluster.replicasOf(masterPort);
      expect(replica).toBeDefined();
      // Replication is asynchronous: the key must be on the replica before the crash to survive it.
      await waitFor(
        async () =>
          (await redisCommands(Number(replica!.split(":")[1]), [["READONLY"], ["GET", key]]))[1] === "before",
        { message: "key replicated" },
      );

      await cluster.killMaster(masterPort);
      const { master, ms } = await cluster.waitForFailover(masterPort);
      console.log(`Redis Cluster failover: ${replica} replaced ${owner!.address} after ${ms} ms`);
      expect(master).toBe(replica!);
      expect(await cluster.masters()).not.toContain(owner!.address);
      expect(await cluster.masters()).toHaveLength(3);

      await waitFor(async () => (await redis.get(key)) === "before", {
        timeoutMs: 20_000,
        message: "the key read through the promoted replica",
      });
      await waitFor(async () => (await redis.set(key, "after")) === "OK", {
        timeoutMs: 20_000,
        message: "a write to the failed-over slot",
      });
      expect(await redisCommand(Number(master.split(":")[1]), "GET", key)).toBe("after");
    } finally {
      redis.disconnect();
    }
  });

  test("a paused node makes a command time out; resumed, it answers", async () => {
    const [masterAddress] = await cluster.masters();
    const port = Number(masterAddress!.split(":")[1]);
    cluster.pause(port);
    try {
      await expect(redisCommands(port, [["PING"]], 500)).rejects.toThrow(/no reply/);
    } finally {
      cluster.resume(port);
    }
    expect(await redisCommand(port, "PING")).toBe("PONG");
  });

  test("stop kills every node and removes every directory", async () => {
    const own = await startRedisCluster();
    const dirs = own.dirs;
    expect(dirs.every((dir) => existsSync(dir))).toBe(true);
    await own.stop();
    expect(dirs.some((dir) => existsSync(dir))).toBe(false);
    for (const node of own.nodes) {
      await expect(redisCommand(Number(node.split(":")[1]), "PING")).rejects.toThrow();
    }
  }, 60_000);
});
