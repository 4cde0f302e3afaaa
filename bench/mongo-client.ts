/**
 * The MongoDB driver's own CPU per operation under Bun, counting operations two ways: the driver's
 * command monitoring (`monitorCommands` and a `commandStarted` listener, as the service did) and the
 * counting view of src/adapters/mongo/operation-counter.ts (monitoring off, as the service does now).
 * The operation is the placement actor's: a conditional updateOne by _id with the service's write
 * concern, 16 at a time, on the harness's MongoDB-wire store. The variants run in turns, so that a
 * machine that gets busier hurts both alike; the table gives each one's median.
 *
 *   bun run bench:mongo-client [--operations 6000] [--rounds 5] [--smoke]
 */
import { parseArgs } from "node:util";
import { type Collection, MongoClient } from "mongodb";
import { countOperations } from "../src/adapters/mongo/operation-counter.ts";
import { startMongo } from "../test/support/servers/servers.ts";
import { runBenchmark } from "./output.ts";
import { medianTable } from "./process-stats.ts";
import { DURABLE, inParallel } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    operations: { type: "string" },
    rounds: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const OPERATIONS = Number(args.operations ?? (args.smoke ? 500 : 6_000));
const ROUNDS = Number(args.rounds ?? (args.smoke ? 1 : 5));
const CONCURRENCY = 16;
const DOCUMENTS = 100;

type Doc = { _id: string; status: string; n: number; at?: Date };

/** Client CPU (user + system) in µs per updateOne. */
async function microsPerUpdate(collection: Collection<Doc>): Promise<number> {
  const started = process.cpuUsage();
  await inParallel(OPERATIONS, CONCURRENCY, (i) =>
    collection.updateOne(
      { _id: `d${i % DOCUMENTS}`, status: { $in: ["accepted", "placed"] } },
      { $set: { n: i, at: new Date() } },
      DURABLE,
    ),
  );
  const used = process.cpuUsage(started);
  return (used.user + used.system) / OPERATIONS;
}

runBenchmark("bench:mongo-client", async () => {
  const server = await startMongo();
  const url = server.url.replace(/\/?(\?|$)/, "/bench_mongo_client$1");
  let operations = 0;
  const monitored = new MongoClient(url, { monitorCommands: true, maxPoolSize: CONCURRENCY });
  monitored.on("commandStarted", () => {
    operations += 1;
  });
  const plain = new MongoClient(url, { maxPoolSize: CONCURRENCY });
  try {
    const variants = {
      "command monitoring": monitored.db().collection<Doc>("docs"),
      "counting view": countOperations(plain.db(), () => {
        operations += 1;
      }).collection<Doc>("docs"),
    };
    await variants["command monitoring"].deleteMany({});
    await variants["command monitoring"].insertMany(
      Array.from({ length: DOCUMENTS }, (_, i) => ({ _id: `d${i}`, status: "accepted", n: 0 })),
    );
    console.log(
      `mongodb driver under Bun ${Bun.version} on ${server.kind}: ${OPERATIONS} updateOne, ` +
        `${CONCURRENCY} at a time, ${ROUNDS} round(s)`,
    );
    for (const collection of Object.values(variants)) await microsPerUpdate(collection); // warm-up
    const results: Record<string, number[]> = { "command monitoring": [], "counting view": [] };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, collection] of Object.entries(variants)) {
        operations = 0;
        const micros = await microsPerUpdate(collection);
        if (operations < OPERATIONS) throw new Error(`${name} counted ${operations} of ${OPERATIONS}`);
        results[name]!.push(micros);
        console.log(`  round ${round}: ${name.padEnd(18)} ${micros.toFixed(1)} µs client CPU per updateOne`);
      }
    }
    console.log(medianTable("client µs CPU per updateOne", results));
  } finally {
    await Promise.all([monitored.close(), plain.close()]);
    await server.stop();
  }
  return 0;
});
