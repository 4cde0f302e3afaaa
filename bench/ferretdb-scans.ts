/**
 * What the sweeper's passes and the end-to-end monitor cost the embedded store (FerretDB v1.24 on its own
 * PostgreSQL) while orders wait. FerretDB passes only equality conditions to PostgreSQL and filters,
 * sorts and limits the rest itself: the full look-ups (`status`, `partition`, then a range on the due
 * time) read every waiting order however few are due; the look-ups by sweep bucket (an equality, served
 * by a GIN index) read only the orders of that bucket. Store CPU (FerretDB + PostgreSQL) per call over
 * --placed placed orders and a backlog of `accepted` ones taken in at 1,000 a second and not yet due
 * (as in a healthy backlog: dispatched at intake, sweep time 10 s ahead), for each --backlog size.
 *
 *   bun run bench:ferretdb-scans [--placed 20000] [--backlog 1000,5000] [--calls 5] [--smoke]
 */
import { parseArgs } from "node:util";
import { Long, MongoClient } from "mongodb";
import { createOldestWaitingLookup } from "../actors/placement/oldest-waiting.ts";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import type { Cents } from "../src/domain/money.ts";
import { newOrderRecord, type OrderStatus, sweepBucketOf } from "../src/domain/order.ts";
import { startFerretOnPostgres } from "../test/support/servers/ferretdb.ts";
import { runBenchmark } from "./output.ts";
import { serverCpuMs, table } from "./process-stats.ts";
import { DURABLE, inParallel, benchOrderId as orderId } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    placed: { type: "string" },
    backlog: { type: "string" },
    calls: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const PLACED = Number(args.placed ?? (args.smoke ? 1_000 : 20_000));
const BACKLOGS = (args.backlog ?? (args.smoke ? "200" : "1000,5000")).split(",").map(Number);
const CALLS = Number(args.calls ?? (args.smoke ? 2 : 5));

runBenchmark("bench:ferretdb-scans", async () => {
  const store = await startFerretOnPostgres();
  const client = new MongoClient(store.url, { maxPoolSize: 8 });
  const storeCpu = () => serverCpuMs(store.port) + serverCpuMs(store.postgres.port);
  const rows: string[][] = [];
  try {
    const db = client.db("bench");
    const repository = new MongoOrderRepository(db, { timeoutMs: 60_000 });
    await repository.ensureIndexes();
    const orders = db.collection<{ _id: string }>("orders");
    let next = 0;
    /** `count` orders as the intake stores them, in `status`, taken in at 1,000 a second until now. */
    const storeOrders = (count: number, status: OrderStatus) => {
      const startedMs = Date.now() - count;
      return inParallel(Math.ceil(count / 500), 4, async (b) => {
        const batch = Array.from({ length: Math.min(500, count - b * 500) }, (_, i) => {
          const record = newOrderRecord(
            orderId(next++),
            {
              type: "limit",
              side: "buy",
              instrument: "US0378331005",
              limitPriceCents: 15_025 as Cents,
              quantity: 1,
            },
            new Date(startedMs + b * 500 + i),
            { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "scans" },
          );
          return { ...record, status, limit_price_cents: Long.fromNumber(15_025) };
        });
        await orders.insertMany(batch, { ordered: false, ...DURABLE });
      });
    };
    await storeOrders(PLACED, "placed");
    let waiting = 0;
    for (const backlog of BACKLOGS) {
      await storeOrders(backlog - waiting, "accepted");
      waiting = backlog;
      // As the monitor asks between its full look-ups: the first call here is the full one.
      const oldestWaiting = createOldestWaitingLookup({
        orders: repository,
        clock: { now: () => new Date() },
        graceMs: 10_000,
      });
      await oldestWaiting();
      const calls: [string, () => Promise<unknown>][] = [
        [
          "sweeper, full pass (500 due at most)",
          () => repository.findDueForDispatch(new Date(), 500, { partition: 0 }),
        ],
        [
          "sweeper, recent pass (10 buckets)",
          async () => {
            const now = new Date();
            for (let bucket = sweepBucketOf(now) - 9; bucket <= sweepBucketOf(now); bucket++)
              await repository.findDueInBucket(bucket, now, 500, { partition: 0 });
          },
        ],
        [
          "monitor, full (oldest waiting, parked count)",
          () => Promise.all([repository.oldestUnfinished(), repository.countParked()]),
        ],
        [
          "monitor, walk of the buckets (oldest waiting, parked count)",
          () => Promise.all([oldestWaiting(), repository.countParked()]),
        ],
      ];
      for (const [name, call] of calls) {
        await call(); // warm-up
        const [cpu0, t0] = [storeCpu(), performance.now()];
        for (let i = 0; i < CALLS; i++) await call();
        const cpuMs = (storeCpu() - cpu0) / CALLS;
        const wallMs = (performance.now() - t0) / CALLS;
        rows.push([
          `${PLACED} placed + ${backlog} waiting`,
          name,
          cpuMs.toFixed(0),
          wallMs.toFixed(0),
          ((cpuMs * 1000) / backlog).toFixed(0),
        ]);
      }
    }
    console.log(
      `FerretDB v1.24 on PostgreSQL: store CPU per call of the sweeper's and the monitor's queries (${CALLS} calls each)`,
    );
    console.log(table([["store", "call", "store CPU ms", "wall ms", "µs per waiting order"], ...rows]));
  } finally {
    await client.close();
    await store.stop();
  }
  return 0;
});
