/**
 * Where FerretDB's own CPU goes in the final outcome's update (issue #9): a Go CPU profile of FerretDB
 * (its /debug/pprof) while MongoOrderRepository.markPlaced runs, 16 at a time, over --docs orders
 * stored as the intake stores them, on FerretDB v1.24 on its own PostgreSQL (the store as the harness
 * runs it). Prints the share of FerretDB's CPU of each part of an update, then the top functions by
 * cumulative time. Needs Go (`go tool pprof`), as FerretDB's build does.
 *
 *   bun run bench:ferretdb-profile [--docs 20000] [--seconds 10] [--smoke]
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Long, MongoClient } from "mongodb";
import { MongoOrderRepository } from "../src/adapters/mongo/order-repository.ts";
import type { Cents } from "../src/domain/money.ts";
import { newOrderRecord } from "../src/domain/order.ts";
import { ferretBinary, startFerretOnPostgres } from "../test/support/servers/ferretdb.ts";
import { freePort } from "../test/support/wait-for.ts";
import { runBenchmark } from "./output.ts";
import { table } from "./process-stats.ts";
import { DURABLE, inParallel, benchOrderId as orderId } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    docs: { type: "string" },
    seconds: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const DOCS = Number(args.docs ?? (args.smoke ? 2_000 : 20_000));
const SECONDS = Number(args.seconds ?? (args.smoke ? 2 : 10));
const CONCURRENCY = 16;

/** Parts of an update, by the FerretDB (or library) function whose cumulative time is that part. */
const PARTS: [string, RegExp][] = [
  ["the whole update command", /handler\.\(\*Handler\)\.MsgUpdate$/],
  ["look-up: SELECT of the document", /backends\/postgresql\.\(\*collection\)\.Query$/],
  ["decoding the stored JSON (sjson)", /handler\/sjson\.Unmarshal$/],
  ["write-back: BEGIN, UPDATE, COMMIT", /backends\/postgresql\.\(\*collection\)\.UpdateAll$/],
  ["encoding the document (sjson)", /handler\/sjson\.Marshal$/],
  ["parsing the command's parameters (reflection)", /handlerparams\.ExtractParams$/],
  ["leak tracking of iterators (resource.Track)", /util\/resource\.Track$/],
  ["system calls (sockets to the client and PostgreSQL)", /^syscall\.Syscall$/],
  ["memory allocation", /^runtime\.mallocgc$/],
  ["garbage collection (background)", /^runtime\.gcBgMarkWorker$/],
];

/** `go tool pprof -top -cum` rows: [cumulative %, function]. */
function cumulativeRows(profile: string): [number, string][] {
  const result = Bun.spawnSync(
    ["go", "tool", "pprof", "-top", "-cum", "-nodecount=400", ferretBinary(), profile],
    {
      stderr: "pipe",
    },
  );
  if (result.exitCode !== 0) throw new Error(`go tool pprof failed: ${result.stderr.toString()}`);
  return result.stdout
    .toString()
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 6 && cols[4]?.endsWith("%"))
    .map((cols) => [Number.parseFloat(cols[4]!), cols.slice(5).join(" ")] as [number, string]);
}

runBenchmark("bench:ferretdb-profile", async () => {
  const debugAddr = `127.0.0.1:${await freePort()}`;
  const store = await startFerretOnPostgres({ debugAddr });
  const client = new MongoClient(store.url, { maxPoolSize: CONCURRENCY * 2 });
  const dir = mkdtempSync(join(tmpdir(), "ferretdb-profile-"));
  try {
    const db = client.db("bench");
    const repository = new MongoOrderRepository(db, { timeoutMs: 30_000 });
    await repository.ensureIndexes();
    const record = (i: number) =>
      newOrderRecord(
        orderId(i),
        {
          type: "limit",
          side: "buy",
          instrument: "US0378331005",
          limitPriceCents: 15_025 as Cents,
          quantity: 10,
        },
        new Date(),
        { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: `account-${i % 64}` },
      );
    await inParallel(Math.ceil(DOCS / 500), 4, async (b) => {
      const batch = Array.from({ length: Math.min(500, DOCS - b * 500) }, (_, k) => record(b * 500 + k));
      // As the repository stores them: the price as int64.
      const stored = batch.map((order) => ({
        ...order,
        limit_price_cents: order.limit_price_cents === null ? null : Long.fromNumber(order.limit_price_cents),
      }));
      await db.collection<{ _id: string }>("orders").insertMany(stored, { ordered: false, ...DURABLE });
    });

    let updates = 0;
    let profiling = true;
    const load = inParallel(DOCS, CONCURRENCY, async (i) => {
      if (!profiling) return;
      const result = await repository.markPlaced(orderId(i), `venue-${i}`, new Date());
      if (result !== "applied") throw new Error(`markPlaced ${orderId(i)}: ${result}`);
      updates += 1;
    });
    await Bun.sleep(500);
    const before = updates;
    const response = await fetch(`http://${debugAddr}/debug/pprof/profile?seconds=${SECONDS}`);
    if (!response.ok) throw new Error(`pprof: HTTP ${response.status}`);
    const profile = join(dir, "ferretdb.pprof");
    writeFileSync(profile, Buffer.from(await response.arrayBuffer()));
    const profiled = updates - before;
    profiling = false;
    await load;
    if (!existsSync(profile)) throw new Error("no profile");

    const rows = cumulativeRows(profile);
    const share = (pattern: RegExp) => rows.find(([, name]) => pattern.test(name))?.[0] ?? 0;
    console.log(
      `FerretDB v1.24 on PostgreSQL, ${DOCS} orders: ${profiled} markPlaced updates (${CONCURRENCY} at a time) ` +
        `during a ${SECONDS} s CPU profile of FerretDB`,
    );
    console.log(
      table([
        ["part of FerretDB's CPU", "share (cumulative)"],
        ...PARTS.map(([name, pattern]) => [name, `${share(pattern).toFixed(1)}%`]),
      ]),
    );
    console.log("\ntop functions by cumulative time (FerretDB, pgx, encoding/json):");
    for (const [percent, name] of rows
      .filter(([, name]) => /FerretDB|pgx|encoding\/json/.test(name))
      .slice(0, 25))
      console.log(`  ${percent.toFixed(1).padStart(5)}%  ${name}`);
  } finally {
    await client.close();
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return 0;
});
