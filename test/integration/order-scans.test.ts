/**
 * The background scans (the sweeper's pass, the end-to-end monitor, the parked list) may take ten times
 * MONGO_TIMEOUT_MS, the operations of the hot path three times: on the embedded store a scan reads every
 * waiting order, and at a backlog of about 30,000 it took longer than the operations' 6 s and failed on
 * every pass. Shown here with the real store stopped (SIGSTOP) for longer than an operation may take but
 * shorter than a scan may: the point read fails, the scans started at the same time return.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createMongoClient } from "../../src/adapters/mongo/client.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { databaseName } from "../../src/config.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { isolatedEnv, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(60_000);

const servers = useServers();
const MONGO_TIMEOUT_MS = 400; // operations: 1.2 s; scans: 4 s
/** Shorter than a scan may take (4 s), so that a scan still waiting then returns. */
const LONGEST_PAUSE_MS = 3_000;

type Fulfilled<T> = { status: "fulfilled"; value: T };
type Settled<T> = Fulfilled<T> | { status: "rejected"; reason: unknown };
/** One operation's outcome, as Promise.allSettled gives it, without waiting for the others. */
const settle = <T>(operation: Promise<T>): Promise<Settled<T>> =>
  operation.then(
    (value) => ({ status: "fulfilled", value }),
    (reason: unknown) => ({ status: "rejected", reason }),
  );

let client: ReturnType<typeof createMongoClient>;
let orders: MongoOrderRepository;

beforeAll(async () => {
  const env = isolatedEnv(servers);
  client = createMongoClient(env.MONGO_URL!, { timeoutMs: MONGO_TIMEOUT_MS, maxPoolSize: 8 });
  orders = new MongoOrderRepository(client.db(databaseName(env.MONGO_URL!)), { timeoutMs: 5_000 });
  await orders.ensureIndexes();
  const longAgo = new Date(Date.now() - 60_000);
  for (let i = 0; i < 5; i++) {
    await orders.insert(
      newOrderRecord(
        `0190a6c2-8f3e-7c4a-9b1d-00000000000${i}`,
        {
          type: "limit",
          side: "buy",
          instrument: "US0378331005",
          limitPriceCents: 100 as Cents,
          quantity: 1,
        },
        longAgo,
        { partitions: 1, dispatchGraceMs: 1_000, idempotencyKey: null, account: "scans" },
      ),
    );
  }
  // From here on the repository runs with the short timeout under test.
  orders = new MongoOrderRepository(client.db(databaseName(env.MONGO_URL!)), { timeoutMs: MONGO_TIMEOUT_MS });
});

afterAll(async () => {
  servers.mongo.resume();
  await client?.close();
});

test("the store stopped longer than an operation may take: the point read fails, the scans return", async () => {
  // A pooled connection for each operation below (the monitor's read is two), so that the pause meets
  // them mid-operation, not waiting for a connection (a different timeout).
  const operations = () => [
    settle(orders.findById("0190a6c2-8f3e-7c4a-9b1d-000000000000")),
    settle(orders.findDueForDispatch(new Date(), 500, { partition: 0 })),
    settle(orders.oldestUnfinished()),
    settle(orders.countParked()),
  ];
  let connections = 0;
  client.on("connectionReady", () => {
    connections += 1;
  });
  await waitFor(
    async () => {
      await Promise.all([...operations(), ...operations(), ...operations()]);
      return connections >= 6 || null;
    },
    { message: "six pooled connections" },
  );

  // The store resumes once the point read has given up (at the latest after LONGEST_PAUSE_MS), not on
  // a timer racing the read's deadline: on a loaded machine such a timer once let the store answer first.
  servers.mongo.pause();
  const pausedAt = performance.now();
  const [pointRead, due, oldest, parked] = operations() as [
    Promise<Settled<unknown>>,
    Promise<Settled<{ _id: string }[]>>,
    Promise<Settled<{ status: string }[]>>,
    Promise<Settled<number>>,
  ];
  const pausedMs = await Promise.race([pointRead, Bun.sleep(LONGEST_PAUSE_MS)]).then(() => {
    servers.mongo.resume();
    return performance.now() - pausedAt;
  });

  expect((await pointRead).status).toBe("rejected");
  // The scans lived through a pause longer than the point read's deadline.
  expect(pausedMs).toBeGreaterThan(3 * MONGO_TIMEOUT_MS - 50);
  const dueOrders = await due;
  expect(dueOrders.status).toBe("fulfilled");
  expect((dueOrders as Fulfilled<{ _id: string }[]>).value.map((o) => o._id).sort()).toEqual(
    Array.from({ length: 5 }, (_, i) => `0190a6c2-8f3e-7c4a-9b1d-00000000000${i}`),
  );
  const oldestOrders = await oldest;
  expect(oldestOrders.status).toBe("fulfilled");
  expect((oldestOrders as Fulfilled<{ status: string }[]>).value.map((o) => o.status)).toEqual(["accepted"]);
  expect(await parked).toEqual({ status: "fulfilled", value: 0 });
});
