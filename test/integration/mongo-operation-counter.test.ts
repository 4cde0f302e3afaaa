/**
 * orders_mongo_operations_total without the driver's command monitoring: the counting view of a Db
 * (src/adapters/mongo/operation-counter.ts) against the driver's own count of the commands it sent, on
 * the harness's MongoDB-wire server, through the real stores. Every command the view counts is counted
 * exactly as often as the driver sent it; what the driver sent beyond that is only its own traffic
 * (cursor continuation, session cleanup, handshakes), not an operation of the service.
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { MongoClient } from "mongodb";
import { MongoIdempotencyStore } from "../../src/adapters/mongo/idempotency-store.ts";
import { countOperations } from "../../src/adapters/mongo/operation-counter.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { databaseName } from "../../src/config.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { isolatedEnv, useServers } from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();
const clients: MongoClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
});

/** Commands a driver sends on its own, which no store method asks for. */
const DRIVER_OWN = new Set([
  "getMore",
  "killCursors",
  "endSessions",
  "buildInfo",
  "hello",
  "ismaster",
  "isMaster",
]);

const order = (id: string, account: string) =>
  newOrderRecord(
    id,
    { type: "limit", side: "buy", instrument: "US0378331005", limitPriceCents: 1_000 as Cents, quantity: 5 },
    new Date(),
    { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account },
  );

test("the stores' operations are counted by command exactly as the driver sends them", async () => {
  const env = isolatedEnv(servers);
  const client = new MongoClient(env.MONGO_URL!, { monitorCommands: true, maxPoolSize: 4 });
  clients.push(client);
  const sent = new Map<string, number>();
  client.on("commandStarted", (event) => sent.set(event.commandName, (sent.get(event.commandName) ?? 0) + 1));
  const counted = new Map<string, number>();
  const db = countOperations(client.db(databaseName(env.MONGO_URL!)), (command) =>
    counted.set(command, (counted.get(command) ?? 0) + 1),
  );

  const orders = new MongoOrderRepository(db, { timeoutMs: 10_000 });
  await orders.ensureIndexes();
  const ids = Array.from({ length: 6 }, () => crypto.randomUUID());
  await Promise.all(ids.map((id) => orders.insert(order(id, "counter")))); // group commit: one insertMany
  expect(await orders.markPlaced(ids[0]!, "V-1", new Date())).toBe("applied");
  expect(await orders.markPlaced(ids[0]!, "V-1", new Date())).toBe("already"); // update, then a read back
  expect(await orders.markRejected(ids[1]!, "no", new Date())).toBe("applied");
  expect((await orders.findById(ids[2]!))?._id).toBe(ids[2]!);
  expect(await orders.findDueForDispatch(new Date(Date.now() + 60_000), 2, { partition: 0 })).toHaveLength(2);
  await orders.oldestUnfinished();
  expect(await orders.countParked()).toBe(0);
  await orders.park(ids[3]!, "test", new Date());
  expect((await orders.unpark(ids[3]!, new Date()))?._id).toBe(ids[3]!);

  const idempotency = new MongoIdempotencyStore(db, 10_000);
  await idempotency.ensureIndexes();
  await idempotency.purgeExpired(new Date());
  expect((await db.command({ ping: 1 })).ok).toBe(1);

  expect([...counted.keys()].sort()).toEqual(
    expect.arrayContaining(["aggregate", "find", "findAndModify", "insert", "ping", "update"]),
  );
  for (const [command, count] of counted)
    expect({ command, count: sent.get(command) ?? 0 }).toEqual({ command, count });
  const beyond = [...sent.keys()].filter((command) => !counted.has(command));
  expect(beyond.filter((command) => !DRIVER_OWN.has(command))).toEqual([]);
  // The group commit: six orders, one insert command.
  expect(counted.get("insert")).toBe(1);
});
