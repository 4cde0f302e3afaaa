/**
 * What batching the final outcome saves on the embedded store (FerretDB v1.24 on its own PostgreSQL):
 * CPU per conditional update of the client (this process: the MongoDB driver under Bun), of FerretDB and
 * of PostgreSQL, and updates per second, for
 *
 *   updateOne, 16 at a time   the final write as it was: one conditional updateOne per order, bounded by
 *                             MONGO_MAX_IN_FLIGHT (16)
 *   bulkWrite of B, C at a time   the same updates, B per unordered bulkWrite (as updateMany by `_id`,
 *                             as the repository sends them), C bulkWrites at once
 *   markPlaced, 256 callers   MongoOrderRepository.markPlaced as the actors call it, group-committed
 *                             (src/adapters/mongo/final-outcome-batches.ts: up to 32 per bulkWrite, 4
 *                             at once), each caller answered for its own order
 *
 * The variants run in turns for --rounds rounds (a machine that gets busier hurts all alike); each
 * updates --ops orders of a store holding --docs, with the filter and fields of the final outcome.
 *
 *   bun run bench:ferretdb-batches [--docs 20000] [--ops 4000] [--rounds 2] [--json reports/ferretdb-final-batches.json]
 *                                  [--smoke]
 */
import { parseArgs } from "node:util";
import { type Collection, MongoClient } from "mongodb";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import type { Cents } from "../src/domain/money.ts";
import { newOrderRecord } from "../src/domain/order.ts";
import { startFerretOnPostgres } from "../test/support/servers/ferretdb.ts";
import { writeJsonReport } from "./output.ts";
import { median, serverCpuMs, table } from "./process-stats.ts";
import { DURABLE, inParallel, benchOrderId as orderId } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    docs: { type: "string" },
    ops: { type: "string" },
    rounds: { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const OPS = Number(args.ops ?? (args.smoke ? 256 : 4_000));
const ROUNDS = Number(args.rounds ?? (args.smoke ? 1 : 2));

type Variant =
  | { name: string; kind: "single"; inFlight: number }
  | { name: string; kind: "bulk"; batch: number; inFlight: number }
  | { name: string; kind: "repository"; callers: number };
const VARIANTS: Variant[] = [
  { name: "updateOne, 16 at a time", kind: "single", inFlight: 16 },
  { name: "bulkWrite of 16, 4 at a time", kind: "bulk", batch: 16, inFlight: 4 },
  { name: "bulkWrite of 32, 2 at a time", kind: "bulk", batch: 32, inFlight: 2 },
  { name: "bulkWrite of 32, 4 at a time", kind: "bulk", batch: 32, inFlight: 4 },
  { name: "bulkWrite of 64, 2 at a time", kind: "bulk", batch: 64, inFlight: 2 },
  { name: "markPlaced, 256 callers", kind: "repository", callers: 256 },
];
const DOCS = Number(args.docs ?? (args.smoke ? VARIANTS.length * OPS : 20_000));

/** An order as the intake stores it, waiting (its own insert path: group-committed). */
function waitingOrder(i: number) {
  return newOrderRecord(
    orderId(i),
    { type: "limit", side: "buy", instrument: "AAPL", limitPriceCents: 15_025 as Cents, quantity: 10 },
    new Date(),
    { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: `account-${i % 64}` },
  );
}

/** The final outcome's conditional update, as MongoOrderRepository.finish sends it. */
function finalUpdate(i: number) {
  const now = new Date();
  return {
    filter: { _id: orderId(i), status: { $in: ["accepted", "placing"] } },
    update: {
      $set: {
        status: "placed",
        placed_at: now,
        venue_order_id: `venue-${i}`,
        updated_at: now,
        attempts: 1,
        final_write_id: crypto.randomUUID(),
        lease_until: null,
        lease_token: null,
      },
      $unset: { sweep_bucket: "" },
    },
  };
}

function run(variant: Variant, first: number, orders: Collection, repository: MongoOrderRepository) {
  const id = (i: number) => first + i;
  switch (variant.kind) {
    case "single":
      return inParallel(OPS, variant.inFlight, async (i) => {
        const { filter, update } = finalUpdate(id(i));
        const result = await orders.updateOne(filter as never, update, DURABLE);
        if (result.matchedCount !== 1) throw new Error(`${orderId(id(i))} did not match`);
      });
    case "bulk":
      return inParallel(Math.ceil(OPS / variant.batch), variant.inFlight, async (b) => {
        const updates = Array.from({ length: Math.min(variant.batch, OPS - b * variant.batch) }, (_, k) => ({
          updateMany: finalUpdate(id(b * variant.batch + k)),
        }));
        const result = await orders.bulkWrite(updates as never, { ordered: false, ...DURABLE });
        if (result.matchedCount !== updates.length)
          throw new Error(`a bulkWrite matched ${result.matchedCount}`);
      });
    case "repository":
      return inParallel(OPS, variant.callers, async (i) => {
        const answer = await repository.markPlaced(orderId(id(i)), `venue-${id(i)}`, new Date());
        if (answer !== "applied") throw new Error(`markPlaced(${orderId(id(i))}) answered ${answer}`);
      });
  }
}

const store = await startFerretOnPostgres();
const client = new MongoClient(store.url, { maxPoolSize: 32 });
const results: Record<
  string,
  { perS: number[]; clientMs: number[]; ferretMs: number[]; postgresMs: number[] }
> = {};
try {
  const db = client.db("bench");
  const repository = new MongoOrderRepository(db, { timeoutMs: 30_000 });
  await repository.ensureIndexes();
  const orders = db.collection("orders");
  const needed = VARIANTS.length * ROUNDS * OPS;
  const total = Math.max(DOCS, needed);
  await inParallel(total, 256, (i) => repository.insert(waitingOrder(i)));
  console.log(
    `FerretDB on PostgreSQL: ${total} waiting orders; ${OPS} final outcomes per variant, ${ROUNDS} rounds in turns`,
  );
  let next = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of VARIANTS) {
      const first = next;
      next += OPS;
      const client0 = process.cpuUsage();
      const [ferret0, postgres0, t0] = [
        serverCpuMs(store.port),
        serverCpuMs(store.postgres.port),
        performance.now(),
      ];
      await run(variant, first, orders, repository);
      const seconds = (performance.now() - t0) / 1000;
      const clientCpu = process.cpuUsage(client0);
      results[variant.name] ??= { perS: [], clientMs: [], ferretMs: [], postgresMs: [] };
      const entry = results[variant.name]!;
      entry.perS.push(OPS / seconds);
      entry.clientMs.push((clientCpu.user + clientCpu.system) / 1000 / OPS);
      entry.ferretMs.push((serverCpuMs(store.port) - ferret0) / OPS);
      entry.postgresMs.push((serverCpuMs(store.postgres.port) - postgres0) / OPS);
    }
  }
} finally {
  await client.close();
  await store.stop();
}

const ms = (values: number[]) => median(values).toFixed(3);
const rows = [
  ["final outcome (median of rounds)", "per s", "client ms", "FerretDB ms", "PostgreSQL ms", "all ms"],
];
for (const [name, r] of Object.entries(results)) {
  const all = r.clientMs.map((c, i) => c + (r.ferretMs[i] ?? 0) + (r.postgresMs[i] ?? 0));
  rows.push([name, median(r.perS).toFixed(0), ms(r.clientMs), ms(r.ferretMs), ms(r.postgresMs), ms(all)]);
}
console.log(table(rows));
writeJsonReport(args.json ?? "reports/ferretdb-final-batches.json", { ops: OPS, rounds: ROUNDS, results });
process.exit(0);
