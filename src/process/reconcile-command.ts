/**
 * `orders reconcile [--hours N] [--limit N]`: the operator's check that MongoDB and the venue agree on
 * where each order is. A withdrawn order (its POST answered 500) and a rejected one must not be at the
 * venue; a parked order waits for an operator, who should know whether the venue has it before
 * deciding (a replay records it as placed if so). A placed order must be at the venue, under the venue
 * order id MongoDB recorded from its acknowledgement (only `placed` ones: a fill or an end came from the
 * venue's own report). For each such order created in the last --hours (24), up to --limit of each kind
 * (10,000), the venue's record is looked up by the client order id, as the placement actors do before a
 * retry (`GET /orders/{id}` at EXCHANGE_URL).
 *
 * Prints one JSON line per disagreement (`finding`), one per look-up that failed three times
 * (`error`), then a summary line (`truncated` names the kinds that had more than --limit), and
 * records the summary in MongoDB, where the actors' end-to-end monitor exports it as orders_reconcile_*
 * gauges for the alerts. Exit codes: 0 MongoDB and the venue agree; 1 a finding (a person must look:
 * the client was told it failed, or was never told it went through, or was told it was placed and the
 * venue does not have it); 3 no finding, but some look-ups failed (the check is incomplete); 2 usage,
 * or no EXCHANGE_URL to ask.
 */

import { createMongoClient } from "../adapters/mongo/client.ts";
import { MongoOrderRepository, type ReconciledKind } from "../adapters/mongo/order-repository.ts";
import { MongoReconciliationStore } from "../adapters/mongo/reconciliation-store.ts";
import { type Config, databaseName } from "../config.ts";
import type { OrderRecord } from "../domain/order.ts";
import { createHttpExchange } from "../exchange/http-exchange.ts";
import type { Exchange, VenueAck } from "../exchange/port.ts";

const USAGE = "usage: orders reconcile [--hours N] [--limit N]";
const KINDS: readonly ReconciledKind[] = ["withdrawn", "rejected", "parked", "placed"];
type VenueRecord = Pick<VenueAck, "venue_order_id"> | null;
type Order = Pick<OrderRecord, "venue_order_id">;
/** A finding when the venue has the order at all. */
const ifAtVenue = (finding: string) => (record: VenueRecord) => (record === null ? null : finding);
/** Each kind's disagreement with the venue's record, in words; null when they agree. */
const FINDINGS: Record<ReconciledKind, (record: VenueRecord, order: Order) => string | null> = {
  withdrawn: ifAtVenue(
    "withdrawn, yet at the venue: its client was answered 500 and told to send a new order",
  ),
  rejected: ifAtVenue("rejected, yet at the venue: its client was told the venue refused it"),
  parked: ifAtVenue("parked, and already at the venue: a replay records it as placed"),
  placed: (record, order) =>
    record === null
      ? "placed, yet unknown to the venue: its client was told it is at the exchange"
      : record.venue_order_id !== order.venue_order_id
        ? `placed, but the venue knows it as ${record.venue_order_id}, not ${order.venue_order_id}`
        : null,
};
/** Look-ups at once: the venue's capacity belongs to the actors. */
const CONCURRENT_LOOKUPS = 16;
const LOOKUP_ATTEMPTS = 3;
const RETRY_DELAY_MS = 200;

export async function runReconcileCommand(
  config: Config,
  args: string[],
  print: (line: string) => void,
  printError: (line: string) => void = print,
): Promise<number> {
  const parsed = parseArgs(args);
  if (typeof parsed === "string") {
    printError(`orders reconcile: ${parsed}\n${USAGE}`);
    return 2;
  }
  if (!config.EXCHANGE_URL) {
    printError("orders reconcile: EXCHANGE_URL is not set, so there is no venue to ask");
    return 2;
  }
  const venue = createHttpExchange({ baseUrl: config.EXCHANGE_URL, timeoutMs: config.BREAKER_TIMEOUT_MS });
  const mongo = createMongoClient(config.MONGO_URL, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    maxPoolSize: Math.min(2, config.MONGO_MAX_POOL_SIZE),
  });
  try {
    const db = mongo.db(databaseName(config.MONGO_URL));
    const orders = new MongoOrderRepository(db, { timeoutMs: config.MONGO_TIMEOUT_MS });
    const since = new Date(Date.now() - parsed.hours * 3_600_000);
    const checked: Record<string, number> = {};
    /** Kinds with more orders than --limit: some of them were not asked about. */
    const truncated: ReconciledKind[] = [];
    const found: string[] = [];
    let failures = 0;
    for (const kind of KINDS) {
      const candidates = await orders.findForReconciliation(kind, since, parsed.limit);
      checked[kind] = candidates.length;
      if (candidates.length >= parsed.limit) truncated.push(kind);
      await forEachConcurrently(candidates, CONCURRENT_LOOKUPS, async (order) => {
        const line = { order_id: order._id, status: kind, created_at: order.created_at };
        const record = await lookUp(venue, order._id);
        if (record instanceof Error) {
          failures += 1;
          print(JSON.stringify({ ...line, error: `venue look-up failed: ${record.message}` }));
        } else {
          const finding = FINDINGS[kind](record, order);
          if (finding === null) return;
          found.push(order._id);
          print(JSON.stringify({ ...line, venue_order_id: record?.venue_order_id ?? null, finding }));
        }
      });
    }
    const outcome = {
      at: new Date(),
      since,
      checked,
      truncated,
      findings: found.length,
      finding_order_ids: found,
      lookups_failed: failures,
    };
    print(JSON.stringify({ since, checked, truncated, findings: found.length, lookups_failed: failures }));
    await new MongoReconciliationStore(db, config.MONGO_TIMEOUT_MS).record(outcome);
    return found.length > 0 ? 1 : failures > 0 ? 3 : 0;
  } finally {
    await mongo.close();
  }
}

/** The venue's record, null when it has none, or the last error after LOOKUP_ATTEMPTS tries. */
async function lookUp(venue: Exchange, orderId: string): Promise<VenueAck | null | Error> {
  let failure = new Error("not asked");
  for (let attempt = 1; attempt <= LOOKUP_ATTEMPTS; attempt++) {
    if (attempt > 1) await Bun.sleep(RETRY_DELAY_MS * attempt);
    try {
      return await venue.lookup(orderId);
    } catch (error) {
      failure = error as Error;
    }
  }
  return failure;
}

async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function parseArgs(args: string[]): { hours: number; limit: number } | string {
  const values = { hours: 24, limit: 10_000 };
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i] as string;
    const value = Number(args[i + 1]);
    if (flag !== "--hours" && flag !== "--limit") return `unknown argument ${flag}`;
    if (!Number.isInteger(value) || value < 1) return `${flag} needs a whole number of at least 1`;
    values[flag === "--hours" ? "hours" : "limit"] = value;
  }
  return values;
}
