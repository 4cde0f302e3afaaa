/**
 * The sweep buckets on the real store: every write of the repository keeps `sweep_bucket` true (the
 * bucket of `sweep_at` while the order waits, removed once it does not), the bucket look-up returns the
 * due orders of that bucket and partition only, and the query it sends is served by an index, on
 * FerretDB too (its explain shows PostgreSQL's plan: a bitmap scan of the GIN index on sweep_bucket,
 * not a read of every waiting order).
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { type Document, MongoClient } from "mongodb";
import { createOldestWaitingLookup } from "../../actors/placement/oldest-waiting.ts";
import { isFerretDB } from "../../src/adapters/mongo/client.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { databaseName } from "../../src/config.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord, type OrderRecord, sweepBucketOf } from "../../src/domain/order.ts";
import { isolatedEnv, useServers } from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();
let client: MongoClient;
let orders: MongoOrderRepository;
const sent: Document[] = [];

const NOW = new Date();
const GRACE_MS = 10_000;
let sequence = 0;

function order(createdAt: Date, partition = 0): OrderRecord {
  const id = `0190a6c2-8f3e-7c4a-9b1d-${String(++sequence).padStart(12, "0")}`;
  return {
    ...newOrderRecord(
      id,
      { type: "limit", side: "buy", instrument: "US0378331005", limitPriceCents: 100 as Cents, quantity: 1 },
      createdAt,
      { partitions: 1, dispatchGraceMs: GRACE_MS, idempotencyKey: null, account: "buckets" },
    ),
    partition,
  };
}

const bucketOf = async (id: string) => (await orders.collection.findOne({ _id: id }))?.sweep_bucket;

beforeAll(async () => {
  const env = isolatedEnv(servers);
  client = new MongoClient(env.MONGO_URL!, { monitorCommands: true, maxPoolSize: 4 });
  client.on("commandStarted", (event) => {
    if (event.commandName === "find") sent.push(event.command);
  });
  orders = new MongoOrderRepository(client.db(databaseName(env.MONGO_URL!)), { timeoutMs: 5_000 });
  await orders.ensureIndexes();
});

afterAll(async () => {
  await client?.close();
});

test("every write keeps sweep_bucket: the bucket of sweep_at while the order waits, removed after", async () => {
  const waiting = order(NOW);
  const placed = order(NOW);
  const parked = order(NOW);
  const withdrawn = order(NOW);
  const failedDispatch = order(NOW);
  for (const o of [waiting, placed, parked, withdrawn, failedDispatch]) await orders.insert(o);

  expect(await bucketOf(waiting._id)).toBe(sweepBucketOf(new Date(NOW.getTime() + GRACE_MS)));
  expect(await orders.markPlaced(placed._id, "V-1", new Date())).toBe("applied");
  expect(await bucketOf(placed._id)).toBeUndefined();
  await orders.park(parked._id, "dead-lettered", new Date());
  expect(await bucketOf(parked._id)).toBeUndefined();
  expect(await orders.withdraw(withdrawn._id, new Date())).toBe("withdrawn");
  expect(await bucketOf(withdrawn._id)).toBeUndefined();

  const later = new Date(NOW.getTime() + 60_000);
  await orders.markDispatchFailed(failedDispatch._id, later);
  expect(await bucketOf(failedDispatch._id)).toBe(sweepBucketOf(later));
  await orders.unpark(parked._id, later);
  expect(await bucketOf(parked._id)).toBe(sweepBucketOf(later));

  const tombstone = order(NOW);
  expect(await orders.withdraw(tombstone._id, new Date(), tombstone)).toBe("withdrawn");
  expect(await bucketOf(tombstone._id)).toBeUndefined();
});

test("a bucket look-up returns the due, unparked, waiting orders of its bucket and partition, oldest first", async () => {
  const createdAt = new Date(NOW.getTime() - 3_600_000);
  const bucket = sweepBucketOf(new Date(createdAt.getTime() + GRACE_MS));
  const [first, second, placed, parked, otherPartition] = [
    order(createdAt),
    order(new Date(createdAt.getTime() - 1)),
    order(createdAt),
    order(createdAt),
    order(createdAt, 1),
  ];
  const notYetDue = order(new Date(NOW.getTime() + 3_600_000));
  for (const o of [first, second, placed, parked, otherPartition, notYetDue]) await orders.insert(o);
  await orders.markPlaced(placed._id, "V-2", new Date());
  await orders.park(parked._id, "dead-lettered", new Date());

  const due = await orders.findDueInBucket(bucket, NOW, 10, { partition: 0 });
  expect(due.map((o) => o._id)).toEqual([second._id, first._id]);
  expect(
    (await orders.findDueInBucket(bucket, NOW, 10, { partition: 0, after: first.sweep_at })).map(
      (o) => o._id,
    ),
  ).toEqual([first._id]);
  expect((await orders.findDueInBucket(bucket, NOW, 10, { partition: 1 })).map((o) => o._id)).toEqual([
    otherPartition._id,
  ]);
  // Not yet due: in its bucket, but not returned before its time.
  const future = sweepBucketOf(notYetDue.sweep_at);
  expect(await orders.findDueInBucket(future, NOW, 10, { partition: 0 })).toEqual([]);
  expect(
    (await orders.findDueInBucket(future, notYetDue.sweep_at, 10, { partition: 0 })).map((o) => o._id),
  ).toEqual([notYetDue._id]);
});

test("the bucket look-up the repository sends is served by an index", async () => {
  sent.length = 0;
  await orders.findDueInBucket(sweepBucketOf(NOW), NOW, 500, { partition: 0 });
  const find = sent.find((command) => command.filter?.sweep_bucket !== undefined);
  expect(find).toBeDefined();
  const { find: collection, filter, sort, limit } = find!;
  const explained = await orders.collection.db.command({
    explain: { find: collection, filter, sort, limit },
  });
  const plan = JSON.stringify(explained.queryPlanner);
  if (await isFerretDB(orders.collection.db)) {
    // FerretDB passes the equalities down; PostgreSQL's plan reads the GIN index on sweep_bucket.
    expect(explained.filterPushdown).toBe(true);
    expect(plan).toMatch(/"Index Name":"[^"]+_sweep_bucket_gin"/);
  } else {
    expect(plan).toContain("sweep_bucket_partition_sweep_at");
  }
});

test("the monitor's walk of the buckets reports the oldest waiting order a full look-up reports", async () => {
  const lookup = createOldestWaitingLookup({ orders, clock: { now: () => new Date() }, graceMs: GRACE_MS });
  const full = await lookup();
  const walk = await lookup();
  const accepted = (result: { status: string; created_at: Date }[]) =>
    result.find((r) => r.status === "accepted")?.created_at.getTime();
  expect(accepted(full)).toBeDefined();
  expect(accepted(walk)).toBe(accepted(full));
  // The walk's look-up is an equality on the bucket too, served by the same index.
  sent.length = 0;
  await orders.oldestWaitingInBucket(sweepBucketOf(NOW));
  const find = sent.find((command) => command.filter?.sweep_bucket !== undefined)!;
  const explained = await orders.collection.db.command({
    explain: { find: find.find, filter: find.filter, sort: find.sort, limit: find.limit },
  });
  const plan = JSON.stringify(explained.queryPlanner);
  if (await isFerretDB(orders.collection.db)) expect(plan).toMatch(/"Index Name":"[^"]+_sweep_bucket_gin"/);
  else expect(plan).toContain("sweep_bucket_partition_sweep_at");
});
