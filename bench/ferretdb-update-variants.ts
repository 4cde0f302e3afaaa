/**
 * What does NOT make the final outcome's update cheaper on the embedded store (issue #9): the store CPU
 * (FerretDB + PostgreSQL) per `updateOne` of MongoOrderRepository.markPlaced, under variants of the
 * document, the indexes, PostgreSQL's settings and the transport, each against the store as the
 * service runs it. The variants run in turns (default, variant 1, ..., default, variant 1, ...) for
 * --rounds rounds, so that a machine that gets busier hurts all of them alike; the table gives each
 * one's median and range.
 *
 *   default            the store as the harness and scripts/run-local.sh run it; documents as the
 *                      intake stores them (newOrderRecord: 25 fields, 10 of them null)
 *   sparse documents   the same orders without their null fields, and the update without the
 *                      lease fields it clears (13 stored fields)
 *   no status/order_id GIN   without the GIN indexes scripts/ferretdb-postgres.sql adds on `status`
 *                      and `order_id` (the one on `_id` stays: every update is looked up by it)
 *   bigger buffer pool shared_buffers=1GB, checkpoint_timeout=30min, max_wal_size=8GB (PostgreSQL's
 *                      defaults: 128MB, 5min, 1GB): fewer evictions and full-page writes
 *   Unix socket        FerretDB reaches PostgreSQL over its Unix socket instead of loopback TCP
 *
 *   bun run bench:ferretdb-variants [--docs 20000] [--ops 2000] [--concurrency 16] [--rounds 3]
 *                                   [--json reports/ferretdb-update-variants.json] [--smoke]
 */
import { parseArgs } from "node:util";
import { Long, MongoClient } from "mongodb";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import type { Cents } from "../src/domain/money.ts";
import { newOrderRecord } from "../src/domain/order.ts";
import { type FerretOnPostgres, startFerretOnPostgres } from "../test/support/servers/ferretdb.ts";
import { writeJsonReport } from "./output.ts";
import { median, serverCpuMs, table } from "./process-stats.ts";
import { DURABLE, inParallel, benchOrderId as orderId } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    docs: { type: "string" },
    ops: { type: "string" },
    concurrency: { type: "string" },
    rounds: { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const DOCS = Number(args.docs ?? (args.smoke ? 2_000 : 20_000));
const OPS = Number(args.ops ?? (args.smoke ? 200 : 2_000));
const CONCURRENCY = Number(args.concurrency ?? 16);
const ROUNDS = Number(args.rounds ?? (args.smoke ? 1 : 3));

interface Variant {
  name: string;
  sparse?: boolean;
  dropGin?: boolean;
  postgresSettings?: string[];
  unixSocket?: boolean;
}
const VARIANTS: Variant[] = [
  { name: "default" },
  { name: "sparse documents", sparse: true },
  { name: "no status/order_id GIN", dropGin: true },
  {
    name: "bigger buffer pool",
    postgresSettings: ["shared_buffers=1GB", "checkpoint_timeout=30min", "max_wal_size=8GB"],
  },
  { name: "Unix socket", unixSocket: true },
];

/** An order as the intake stores it (the repository keeps the price as int64). */
function storedOrder(i: number, sparse: boolean): { _id: string } & Record<string, unknown> {
  const record = newOrderRecord(
    orderId(i),
    { type: "limit", side: "buy", instrument: "AAPL", limitPriceCents: 15_025 as Cents, quantity: 10 },
    new Date(),
    { partitions: 2, dispatchGraceMs: 5_000, idempotencyKey: null, account: `account-${i % 64}` },
  );
  const document: { _id: string } & Record<string, unknown> = {
    ...record,
    limit_price_cents: Long.fromNumber(15_025),
  };
  if (sparse)
    for (const [field, value] of Object.entries(document)) if (value === null) delete document[field];
  return document;
}

async function dropGinIndexes(store: FerretOnPostgres) {
  const indexes = (
    await store.postgres.psql(
      "SELECT schemaname || '.' || indexname FROM pg_indexes WHERE indexname LIKE '%\\_status\\_gin' OR indexname LIKE '%\\_order\\_id\\_gin'",
    )
  )
    .split("\n")
    .filter(Boolean);
  if (indexes.length === 0) throw new Error("no GIN index on status or order_id to drop");
  for (const index of indexes) await store.postgres.psql(`DROP INDEX ${index}`);
}

/** Store CPU in ms per final update (FerretDB, PostgreSQL). */
async function runVariant(variant: Variant): Promise<{ ferretMs: number; postgresMs: number }> {
  const store = await startFerretOnPostgres({
    postgresSettings: variant.postgresSettings,
    unixSocket: variant.unixSocket,
  });
  const client = new MongoClient(store.url, { maxPoolSize: CONCURRENCY * 2 });
  try {
    const db = client.db("bench");
    const repository = new MongoOrderRepository(db, { timeoutMs: 30_000 });
    await repository.ensureIndexes();
    if (variant.dropGin) await dropGinIndexes(store);
    const orders = db.collection<{ _id: string } & Record<string, unknown>>("orders");
    await inParallel(Math.ceil(DOCS / 500), 4, (b) =>
      orders.insertMany(
        Array.from({ length: Math.min(500, DOCS - b * 500) }, (_, k) =>
          storedOrder(b * 500 + k, variant.sparse ?? false),
        ),
        { ordered: false, ...DURABLE },
      ),
    );
    // Spread over the collection, each order once.
    const target = (i: number) => orderId((i * 7_919) % DOCS);
    const ferret0 = serverCpuMs(store.port);
    const postgres0 = serverCpuMs(store.postgres.port);
    await inParallel(OPS, CONCURRENCY, async (i) => {
      const id = target(i);
      const now = new Date();
      if (variant.sparse) {
        // markPlaced's filter and fields, without the lease fields the sparse document never had.
        const result = await orders.updateOne(
          { _id: id, status: { $in: ["accepted", "placing"] } },
          {
            $set: {
              status: "placed",
              placed_at: now,
              venue_order_id: `venue-${i}`,
              updated_at: now,
              attempts: 1,
            },
          },
          DURABLE,
        );
        if (result.matchedCount !== 1) throw new Error(`update of ${id} matched nothing`);
      } else {
        const result = await repository.markPlaced(id, `venue-${i}`, now);
        if (result !== "applied") throw new Error(`markPlaced(${id}) answered ${result}`);
      }
    });
    return {
      ferretMs: (serverCpuMs(store.port) - ferret0) / OPS,
      postgresMs: (serverCpuMs(store.postgres.port) - postgres0) / OPS,
    };
  } finally {
    await client.close();
    await store.stop();
  }
}

console.log(
  `FerretDB on PostgreSQL: ${DOCS} orders, ${OPS} final updates ${CONCURRENCY} at a time, ${ROUNDS} ` +
    `round(s) of ${VARIANTS.length} variants in turns; store CPU in ms per update`,
);
const samples = new Map<string, { ferretMs: number; postgresMs: number }[]>();
for (let round = 1; round <= ROUNDS; round++) {
  for (const variant of VARIANTS) {
    const sample = await runVariant(variant);
    samples.set(variant.name, [...(samples.get(variant.name) ?? []), sample]);
    console.log(
      `  round ${round}: ${variant.name.padEnd(24)} FerretDB ${sample.ferretMs.toFixed(3)} + ` +
        `PostgreSQL ${sample.postgresMs.toFixed(3)} = ${(sample.ferretMs + sample.postgresMs).toFixed(3)} ms`,
    );
  }
}
const ms = (value: number) => value.toFixed(3);
const rows = [["variant", "store ms per update (median)", "range", "FerretDB ms", "PostgreSQL ms"]];
for (const [name, runs] of samples) {
  const totals = runs.map((run) => run.ferretMs + run.postgresMs);
  rows.push([
    name,
    ms(median(totals)),
    `${ms(Math.min(...totals))}-${ms(Math.max(...totals))}`,
    ms(median(runs.map((run) => run.ferretMs))),
    ms(median(runs.map((run) => run.postgresMs))),
  ]);
}
console.log(table(rows));
writeJsonReport(args.json ?? "reports/ferretdb-update-variants.json", {
  docs: DOCS,
  ops: OPS,
  concurrency: CONCURRENCY,
  rounds: ROUNDS,
  samples: Object.fromEntries(samples),
});
process.exit(0);
