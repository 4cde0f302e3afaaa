/**
 * POST /orders under fuzzed load: the generated requests of test/support/order-fuzz.ts (valid orders and
 * their mutations, unicode, huge numbers, nested junk, not JSON, other media types, sizes around 16 KiB,
 * Idempotency-Keys valid, reused and malformed) through the in-process API (`app.handle`, real MongoDB-wire
 * server and Redis from the harness, a real API key), by concurrent workers. Prints the answers by status,
 * the 5xx count, the contract violations by rule (the oracle accepts what any interleaving may give,
 * such as a 409 while a key's first request is in flight), whether MongoDB holds exactly the new orders,
 * and requests per second (time spent answering; generating the requests is not counted). Writes JSON.
 *
 *   bun bench/fuzz.ts [--requests N] [--concurrency 16] [--seed S] [--json reports/bench-fuzz.json] [--assert]
 *
 * FUZZ_REQUESTS sets the count too (default 100,000; --requests wins). --assert: exit 1 on any 5xx,
 * violation or stored-count mismatch. The per-account rate limit is off (RATE_LIMIT_PER_SECOND=0): one
 * account sends everything, far over its default burst of 400.
 */
import { cpus } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  answerOf,
  FuzzOracle,
  requestOf,
  sampleRequests,
  type Violation,
} from "../test/support/order-fuzz.ts";
import {
  authorizationFor,
  isolatedEnv,
  mongoFor,
  ROOT,
  startInProcess,
  startServers,
  TEST_ACCOUNT,
} from "../test/support/system.ts";
import { runBenchmark, writeJsonReport } from "./output.ts";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string" },
    concurrency: { type: "string" },
    seed: { type: "string" },
    json: { type: "string" },
    assert: { type: "boolean", default: false },
  },
});
const requests = Number(args.requests ?? process.env.FUZZ_REQUESTS ?? 100_000);
const concurrency = Number(args.concurrency ?? 16);
const seed = Number(args.seed ?? Math.floor(Math.random() * 2 ** 31));
const jsonPath = resolve(ROOT, args.json ?? "reports/bench-fuzz.json");
for (const [name, value] of [
  ["--requests / FUZZ_REQUESTS", requests],
  ["--concurrency", concurrency],
] as const) {
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`bench:fuzz: ${name} must be a positive integer`);
    process.exit(2);
  }
}

/** Requests generated at a time (each batch from its own seed, derived from --seed). */
const BATCH = 2_000;

async function main(): Promise<number> {
  const servers = await startServers();
  const env = isolatedEnv(servers, { RATE_LIMIT_PER_SECOND: "0" });
  const app = await startInProcess(env, "api");
  const mongo = mongoFor(env);
  try {
    const headers = authorizationFor(app);
    const oracle = new FuzzOracle({ sequential: false });
    const violations = new Map<string, { count: number; example: string }>();
    const note = (found: Violation[]) => {
      for (const violation of found) {
        const name = violation.rule;
        const entry = violations.get(name) ?? { count: 0, example: violation.detail };
        entry.count += 1;
        violations.set(name, entry);
      }
    };
    let answeringMs = 0;
    let generatingMs = 0;
    let sent = 0;
    let batchIndex = 0;
    const started = performance.now();
    while (sent < requests) {
      let t0 = performance.now();
      const batch = sampleRequests(Math.min(BATCH, requests - sent), seed + batchIndex);
      batchIndex += 1;
      generatingMs += performance.now() - t0;
      t0 = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          for (let i = next++; i < batch.length; i = next++) {
            const fuzzed = batch[i]!;
            const answer = await answerOf(await app.handle(requestOf(fuzzed, headers)));
            note(oracle.judge(fuzzed, answer));
          }
        }),
      );
      answeringMs += performance.now() - t0;
      sent += batch.length;
      if (batchIndex % 10 === 0) process.stderr.write(`bench:fuzz: ${sent}/${requests}\n`);
    }
    const wallS = (performance.now() - started) / 1000;

    // The account's documents: the created orders, plus what a 5xx may have left (withdrawn when it came
    // without a key); anything else would be a refused request's leftover.
    const documents = await mongo.orders
      .find({ account: TEST_ACCOUNT }, { projection: { _id: 1, status: 1 } })
      .toArray();
    const stored = new Set(documents.map((doc) => doc._id));
    const missing = [...oracle.created.keys()].filter((id) => !stored.has(id)).length;
    const unexpected = documents.filter(
      (doc) => !oracle.created.has(doc._id) && !oracle.maybeStored.has(doc._id),
    );
    const byStatus = Object.fromEntries([...oracle.statuses].sort(([a], [b]) => a - b));
    const fiveXx = [...oracle.statuses]
      .filter(([status]) => status >= 500)
      .reduce((sum, [, n]) => sum + n, 0);
    const report = {
      requests: sent,
      concurrency,
      seed,
      by_status: byStatus,
      "5xx": fiveXx,
      created: oracle.created.size,
      replayed: oracle.replayed,
      stored: documents.length,
      created_but_missing: missing,
      stored_after_5xx: documents.length - oracle.created.size + missing - unexpected.length,
      stored_unexpected: unexpected.length,
      violations: Object.fromEntries(violations),
      requests_per_second: Math.round(sent / (answeringMs / 1000)),
      answering_s: Math.round(answeringMs) / 1000,
      generating_s: Math.round(generatingMs) / 1000,
      wall_s: Math.round(wallS * 10) / 10,
      cpus: cpus().length,
    };

    console.log(
      `bench:fuzz: ${sent} requests, concurrency ${concurrency}, seed ${seed} (in process, app.handle)`,
    );
    console.log("  status  count");
    for (const [status, count] of Object.entries(byStatus)) console.log(`  ${status.padEnd(6)}  ${count}`);
    console.log(`  5xx: ${fiveXx}`);
    console.log(
      `  created ${oracle.created.size}, replayed ${oracle.replayed}; the account's documents: ${documents.length} ` +
        `(created but missing: ${missing}; left by a 5xx: ${report.stored_after_5xx}; unexpected: ${unexpected.length})`,
    );
    console.log(
      `  requests/s: ${report.requests_per_second} (answering ${report.answering_s} s; generating ${report.generating_s} s; wall ${report.wall_s} s)`,
    );
    if (violations.size > 0) {
      console.log("  contract violations by rule (one example each):");
      for (const [rule, { count, example }] of violations)
        console.log(`    ${count} x ${rule}: ${example.slice(0, 400)}`);
    } else {
      console.log("  contract violations: none");
    }
    writeJsonReport(jsonPath, report);
    console.log(`  report: ${jsonPath}`);
    const broken = fiveXx > 0 || violations.size > 0 || missing > 0 || unexpected.length > 0;
    return args.assert && broken ? 1 : 0;
  } finally {
    await Promise.allSettled([app.close(), mongo.client.close()]);
    await servers.stop();
  }
}

runBenchmark("bench:fuzz", main);
