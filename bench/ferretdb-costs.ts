/**
 * What one MongoDB operation of the order path costs the embedded store (FerretDB v1.24 on its own
 * PostgreSQL), in CPU of the store's processes (FerretDB and PostgreSQL apart) per operation, under
 * three settings of the store:
 *
 *   baseline          GOGC 100 (Go's default), the GIN indexes with fastupdate on (PostgreSQL's
 *                     default) and the orders' four plain secondary indexes (ORDER_INDEXES)
 *   fastupdate off    GIN indexes with fastupdate off (scripts/ferretdb-postgres.sql)
 *   + GOGC 400        and FerretDB with GOGC=400 (the harness's and scripts/run-local.sh's default)
 *   + no plain indexes  and without the plain secondary indexes, which FerretDB never reads
 *                     (ensureIndexes leaves them out on FerretDB): the store as the service runs it
 *
 * Each store holds --docs orders (the `orders` collection with the service's own indexes), then runs
 * --ops of each operation, --concurrency at a time: the intake's insertMany (batches of 64), the
 * final outcome's conditional updateOne (MongoOrderRepository.markPlaced's filter and fields), and a
 * findOne by _id (GET /orders/{id}). Numbers, no assertions: the operations that dominate the order
 * path, and what each setting saves.
 *
 *   bun run bench:ferretdb [--docs 20000] [--ops 2000] [--concurrency 16] [--json reports/ferretdb-costs.json]
 *                          [--smoke]
 */
import { parseArgs } from "node:util";
import { Long, MongoClient } from "mongodb";
import { MongoOrderRepository, ORDER_INDEXES } from "../src/adapters/mongo/order-repository.ts";
import { type FerretOnPostgres, startFerretOnPostgres } from "../test/support/servers/ferretdb.ts";
import { writeJsonReport } from "./output.ts";
import { serverCpuMs, table } from "./process-stats.ts";
import { DURABLE, inParallel, benchOrderId as orderId } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    docs: { type: "string" },
    ops: { type: "string" },
    concurrency: { type: "string" },
    json: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const DOCS = Number(args.docs ?? (args.smoke ? 2_000 : 20_000));
const OPS = Number(args.ops ?? (args.smoke ? 200 : 2_000));
const CONCURRENCY = Number(args.concurrency ?? 16);
const INSERT_BATCH = 64;

interface Variant {
  name: string;
  gogc: string;
  ginFastUpdate: boolean;
  plainIndexes: boolean;
}
const VARIANTS: Variant[] = [
  { name: "baseline", gogc: "100", ginFastUpdate: true, plainIndexes: true },
  { name: "GIN fastupdate off", gogc: "100", ginFastUpdate: false, plainIndexes: true },
  { name: "+ GOGC 400", gogc: "400", ginFastUpdate: false, plainIndexes: true },
  { name: "+ no plain indexes (default)", gogc: "400", ginFastUpdate: false, plainIndexes: false },
];

function order(i: number) {
  const now = new Date();
  return {
    _id: orderId(i),
    account: `account-${i % 64}`,
    partition: i % 2,
    type: "limit",
    side: "buy",
    instrument: "AAPL",
    limit_price_cents: Long.fromNumber(15_025),
    quantity: 10,
    status: "accepted",
    idempotency_key: null,
    created_at: now,
    updated_at: now,
    sweep_at: now,
    parked_at: null,
  };
}

interface Cost {
  perS: number;
  ferretMs: number;
  postgresMs: number;
}

async function measure(store: FerretOnPostgres, operations: number, run: () => Promise<void>): Promise<Cost> {
  const ferret = () => serverCpuMs(store.port);
  const postgres = () => serverCpuMs(store.postgres.port);
  const [f0, p0, t0] = [ferret(), postgres(), performance.now()];
  await run();
  const seconds = (performance.now() - t0) / 1000;
  return {
    perS: operations / seconds,
    ferretMs: (ferret() - f0) / operations,
    postgresMs: (postgres() - p0) / operations,
  };
}

async function runVariant(variant: Variant) {
  const store = await startFerretOnPostgres({ gogc: variant.gogc });
  const client = new MongoClient(store.url, { maxPoolSize: CONCURRENCY * 2 });
  try {
    const db = client.db("bench");
    const repository = new MongoOrderRepository(db, { timeoutMs: 30_000 });
    await repository.ensureIndexes();
    const orders = db.collection<ReturnType<typeof order>>("orders");
    // ensureIndexes leaves them out on FerretDB: made here directly, as before that rule.
    if (variant.plainIndexes) {
      for (const { key, ...options } of ORDER_INDEXES) await orders.createIndex(key, options);
    }
    if (variant.ginFastUpdate) {
      // The trigger of scripts/ferretdb-postgres.sql made them with fastupdate off: back to the default.
      const gin = (
        await store.postgres.psql(
          "SELECT schemaname || '.' || indexname FROM pg_indexes WHERE indexname LIKE '%_gin'",
        )
      )
        .split("\n")
        .filter(Boolean);
      for (const index of gin) await store.postgres.psql(`ALTER INDEX ${index} SET (fastupdate = on)`);
    }
    // The store's content before measuring: --docs orders, written the way the intake writes them.
    // Ids 0..OPS-1 are the measured inserts (then updated); OPS.. are preloaded (the findOnes read them).
    const preload = Math.max(OPS, DOCS - OPS);
    await inParallel(Math.ceil(preload / 500), 4, (b) =>
      orders.insertMany(
        Array.from({ length: Math.min(500, preload - b * 500) }, (_, k) => order(OPS + b * 500 + k)),
        { ordered: false, ...DURABLE },
      ),
    );
    const insert = await measure(store, OPS, () =>
      inParallel(Math.ceil(OPS / INSERT_BATCH), Math.max(1, CONCURRENCY / 4), (b) =>
        orders.insertMany(
          Array.from({ length: Math.min(INSERT_BATCH, OPS - b * INSERT_BATCH) }, (_, k) =>
            order(b * INSERT_BATCH + k),
          ),
          { ordered: false, ...DURABLE },
        ),
      ),
    );
    const update = await measure(store, OPS, () =>
      inParallel(OPS, CONCURRENCY, async (i) => {
        const result = await repository.markPlaced(orderId(i), `venue-${i}`, new Date());
        if (result !== "applied") throw new Error(`markPlaced(${orderId(i)}) answered ${result}`);
      }),
    );
    const find = await measure(store, OPS, () =>
      inParallel(OPS, CONCURRENCY, async (i) => {
        if ((await repository.findById(orderId(OPS + i))) === null)
          throw new Error(`${orderId(OPS + i)} not found`);
      }),
    );
    return { insert, update, find };
  } finally {
    await client.close();
    await store.stop();
  }
}

console.log(
  `FerretDB on PostgreSQL: ${DOCS} orders, ${OPS} operations of each kind, ${CONCURRENCY} at a time ` +
    `(insertMany in batches of ${INSERT_BATCH}); store CPU in ms per operation (per document for inserts)`,
);
const results: Record<string, Awaited<ReturnType<typeof runVariant>>> = {};
for (const variant of VARIANTS) {
  results[variant.name] = await runVariant(variant);
  console.log(`  measured: ${variant.name}`);
}
const ms = (value: number) => value.toFixed(3);
const rows = [["store settings", "operation", "per s", "FerretDB ms", "PostgreSQL ms", "store ms"]];
for (const [name, byOperation] of Object.entries(results)) {
  for (const [operation, cost] of Object.entries(byOperation)) {
    rows.push([
      name,
      operation === "insert"
        ? "insertMany (per order)"
        : operation === "update"
          ? "updateOne (final)"
          : "findOne",
      cost.perS.toFixed(0),
      ms(cost.ferretMs),
      ms(cost.postgresMs),
      ms(cost.ferretMs + cost.postgresMs),
    ]);
  }
}
console.log(table(rows));
writeJsonReport(args.json ?? "reports/ferretdb-costs.json", {
  docs: DOCS,
  ops: OPS,
  concurrency: CONCURRENCY,
  results,
});
process.exit(0);
