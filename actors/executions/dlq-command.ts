/**
 * `orders dlq list --executions [--limit N]` and `orders dlq replay --executions <entry-id>... | --all`:
 * the operator's view of the executions dead-letter stream. An execution report lands there after
 * MAX_DELIVERIES deliveries without being applied: almost always a report for an order MongoDB did not
 * know (yet), sometimes an entry that holds no valid report. A fill left there is a fill the client never
 * sees, so once the order exists, replay puts the report back on its executions stream (the one the
 * gateway would have chosen) and deletes the dead-letter entry. Applying is idempotent on the venue's
 * exec id, so a report that was applied after all is counted as a duplicate, never twice. An entry
 * whose order is still unknown, or that holds no valid report, is reported and left in place.
 */
import { createMongoClient } from "../../src/adapters/mongo/client.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { closeRedis, createRedisConnection, redisTarget } from "../../src/adapters/redis.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import { type Config, databaseName } from "../../src/config.ts";
import { createIoredisStreamPort, type StreamEntry } from "../runtime/redis-streams.ts";
import { parseReport } from "./execution-actor.ts";

export const EXECUTIONS_DLQ_USAGE =
  "orders dlq list --executions [--limit N] | orders dlq replay --executions <entry-id>... | orders dlq replay --executions --all";

export async function runExecutionDeadLetterCommand(
  config: Config,
  args: string[],
  print: (line: string) => void,
): Promise<number> {
  const [action, ...rest] = args;
  if (action !== "list" && action !== "replay") {
    print(`usage: ${EXECUTIONS_DLQ_USAGE}`);
    return 2;
  }
  const redis = createRedisConnection(redisTarget(config), {
    name: "orders-dlq-executions",
    commandTimeoutMs: 5_000,
  });
  const mongo = createMongoClient(config.MONGO_URL, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    maxPoolSize: config.MONGO_MAX_POOL_SIZE,
  });
  try {
    const keys = createRedisKeys(
      config.REDIS_KEY_PREFIX,
      config.PLACEMENT_PARTITIONS,
      config.EXECUTION_PARTITIONS,
    );
    const port = createIoredisStreamPort(redis);
    const orders = new MongoOrderRepository(mongo.db(databaseName(config.MONGO_URL)), {
      timeoutMs: config.MONGO_TIMEOUT_MS,
    });
    const stream = keys.executionDeadLetterStream;
    if (action === "list") {
      const limitIndex = rest.indexOf("--limit");
      const limit = limitIndex >= 0 ? Number(rest[limitIndex + 1] ?? 100) : 100;
      for (const entry of await port.range(stream, "-", "+", limit)) print(JSON.stringify(describe(entry)));
      return 0;
    }
    const entries = rest.includes("--all")
      ? await port.range(stream, "-", "+", 10_000)
      : (await Promise.all(rest.map((id) => port.range(stream, id, id, 1)))).flat();
    for (const entry of entries) {
      const raw = payloadOf(entry)?.report;
      const report = parseReport(raw);
      if (raw === undefined || report === null) {
        print(JSON.stringify({ id: entry.id, result: "not an execution report; left in place" }));
        continue;
      }
      const line = { id: entry.id, order_id: report.client_order_id, exec_id: report.exec_id };
      if ((await orders.findById(report.client_order_id)) === null) {
        print(JSON.stringify({ ...line, result: "unknown order; left in place" }));
        continue;
      }
      // Added before the dead letter is removed: a crash between the two leaves a copy to replay again
      // (applied once all the same), never a report in neither place.
      await port.add(keys.executionStream(report.client_order_id), { report: raw });
      await port.remove(stream, [entry.id]);
      print(JSON.stringify({ ...line, result: "replayed" }));
    }
    return 0;
  } finally {
    await closeRedis(redis);
    await mongo.close();
  }
}

/** A dead-letter entry as the operator reads it: why it is there, and which order and fill it holds. */
function describe(entry: StreamEntry) {
  const { payload: _payload, ...fields } = entry.fields ?? {};
  const report = parseReport(payloadOf(entry)?.report);
  return {
    id: entry.id,
    ...fields,
    ...(report
      ? {
          order_id: report.client_order_id,
          exec_id: report.exec_id,
          exec_type: report.exec_type,
          last_qty: report.last_qty,
          transact_time: report.transact_time,
        }
      : { report: null }),
  };
}

/** The fields of the entry that was dead-lettered (the runtime keeps them as JSON in `payload`). */
function payloadOf(entry: StreamEntry): Record<string, string> | null {
  try {
    const payload = entry.fields?.payload;
    return payload ? (JSON.parse(payload) as Record<string, string>) : null;
  } catch {
    return null;
  }
}
