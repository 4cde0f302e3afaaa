/**
 * `orders dlq list --executions [--limit N]` and `orders dlq replay --executions <entry-id>... | --all`:
 * the operator's view of the executions dead-letter stream. An execution report lands there after
 * MAX_DELIVERIES deliveries without being applied: almost always a report for an order MongoDB did not
 * know (yet), sometimes an entry that holds no valid report or a report the store kept refusing (its
 * `last_error` says "the store refused"; replay it once the cause is fixed). A fill left there is a
 * fill the client never sees, so once the order exists, replay puts the report back on its executions
 * stream (the one the gateway would have chosen) and deletes the dead-letter entry. Applying is idempotent on the venue's
 * exec id, so a report that was applied after all is counted as a duplicate, never twice. An entry
 * whose order is still unknown, or that holds no valid report, is reported and left in place.
 */
import type { Config } from "../../src/config.ts";
import { limitOf, parsePayload, runDeadLetterActions, selectedEntries } from "../placement/dlq-command.ts";
import type { StreamEntry } from "../runtime/redis-streams.ts";
import { parseReport } from "./execution-actor.ts";

export function runExecutionDeadLetterCommand(
  config: Config,
  args: string[],
  print: (line: string) => void,
): Promise<number> {
  return runDeadLetterActions(config, args, print, {
    usage:
      "orders dlq list --executions [--limit N] | orders dlq replay --executions <entry-id>... | orders dlq replay --executions --all",
    connectionName: "orders-dlq-executions",
    list: async ({ keys, port }, rest) => {
      for (const entry of await port.range(keys.executionDeadLetterStream, "-", "+", limitOf(rest)))
        print(JSON.stringify(describe(entry)));
    },
    replay: async ({ keys, port, orders }, rest) => {
      const stream = keys.executionDeadLetterStream;
      for (const entry of await selectedEntries(port, stream, rest)) {
        const raw = parsePayload(entry.fields?.payload)?.report;
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
        // Added before the dead letter is removed: a crash between the two leaves a copy to replay
        // again (applied once all the same), never a report in neither place.
        await port.add(keys.executionStream(report.client_order_id), { report: raw });
        await port.remove(stream, [entry.id]);
        print(JSON.stringify({ ...line, result: "replayed" }));
      }
    },
  });
}

/** A dead-letter entry as the operator reads it: why it is there, and which order and fill it holds. */
function describe(entry: StreamEntry) {
  const { payload: _payload, ...fields } = entry.fields ?? {};
  const report = parseReport(parsePayload(entry.fields?.payload)?.report);
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
