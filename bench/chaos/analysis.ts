/**
 * The verdict of a chaos run (Jepsen style), as pure functions of what was gathered: the client log
 * and the read-outs of MongoDB, the venue and Redis once the backlog drained. No I/O here: gathering
 * is `bench/chaos/checker.ts`, so every rule can be tested on hand-made data (test/chaos/checker.test.ts).
 *
 * `analyze` compares every answer a client got with what MongoDB holds and what the venue recorded;
 * each rule reads as one block:
 * - lost: an id answered 201 that MongoDB does not have;
 * - not placed: an id answered 201 whose order is not placed: `placed`, or moved on by execution
 *   reports (`PLACED_STATUSES`);
 * - unfinished: any order still `accepted` or `placing` once the drain ended;
 * - MongoDB vs venue: every placed order is known at the venue with the same venue order id, no other
 *   order is, and the venue's distinct orders equal the placed orders (placed once); resubmissions the
 *   venue absorbed (its duplicates) are reported, not a violation;
 * - unexpected orders: stored but never answered 201; each must belong to a request whose outcome the
 *   client does not know (5xx, timeout, connection lost), otherwise it is a violation;
 * - idempotency: one order per key; a same-key retry of an answered request replays its id (with the
 *   Idempotent-Replayed header); a different body under a used key gets 422; a 409 only while an
 *   earlier request with that key may still be in flight;
 * - fills: the execution path caught up, and for every order the venue traded or ended, the applied
 *   fills equal the venue's, none past the order's quantity, none flagged, the end status right
 *   (`checkFills`, bench/chaos/fills.ts).
 */
import type { OpResult } from "./client.ts";
import type { VenueStats } from "./cluster.ts";
import { type CollectedFills, checkFills, type FillChecks } from "./fills.ts";
import { tally } from "./stats.ts";

/** The fields of an order document the check reads. */
export interface StoredOrder {
  _id: string;
  status: string;
  quantity: number;
  idempotency_key: string | null;
  venue_order_id: string | null;
  attempts: number;
  redispatches: number;
  parked_at: Date | null;
  rejection_reason: string | null;
}

/** Everything read after the drain: the input of `analyze` besides the client log. */
export interface Collected {
  orders: StoredOrder[];
  venue: VenueStats;
  /** Order id -> venue order id (null: unknown at the venue), for every order in MongoDB. */
  venueRecords: Map<string, string | null>;
  deadLetters: number;
  streamPending: number | null;
  fills: CollectedFills;
}

/**
 * An order is placed once the venue acknowledged it; execution reports then move it on, and a fill may
 * even arrive before the acknowledgement is written (accepted straight to partially_filled or filled).
 */
export const PLACED_STATUSES: readonly string[] = [
  "placed",
  "partially_filled",
  "filled",
  "cancelled",
  "expired",
];
export const isPlaced = (status: string) => PLACED_STATUSES.includes(status);

/** Statuses of an order the service has not finished yet. */
const OPEN_STATUSES: readonly string[] = ["accepted", "placing"];

/**
 * The drain's rule, one poll at a time: drained when no order is open (`accepted` or `placing`) on two
 * polls in a row with the same total, since a request the server was still finishing may store an order
 * late. `settledTotal` is what the next poll passes as `previousTotal`: the total when nothing was open,
 * else -1 (so is the first poll's `previousTotal`).
 */
export function drainPoll(
  counts: Record<string, number>,
  previousTotal: number,
): { drained: boolean; settledTotal: number } {
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
  const open = OPEN_STATUSES.reduce((sum, status) => sum + (counts[status] ?? 0), 0);
  const settledTotal = open === 0 ? total : -1;
  return { drained: open === 0 && total === previousTotal, settledTotal };
}

/** Order counts by status for progress lines; null when MongoDB did not answer. */
export function formatCounts(counts: Record<string, number> | null): string {
  if (!counts) return "mongo unavailable";
  const order = ["accepted", "placing", ...PLACED_STATUSES, "rejected"];
  const keys = [
    ...order.filter((k) => k in counts),
    ...Object.keys(counts).filter((k) => !order.includes(k)),
  ];
  return keys.map((k) => `${k}=${counts[k]}`).join(" ") || "no orders";
}

export interface Checks {
  answeredIds: number;
  lost: number;
  notPlaced: number;
  notPlacedByStatus: Record<string, number>;
  storedOrders: number;
  placedOrders: number;
  /** Orders still `accepted` or `placing` in MongoDB once the drain ended (parked ones included): a violation. */
  unfinished: number;
  venue: {
    orders: number;
    submissions: number;
    duplicates: number;
    failures: number;
    placedUnknownAtVenue: number;
    venueOrderIdMismatch: number;
    notPlacedButAtVenue: number;
    /** venue orders == distinct placed ids in MongoDB. */
    placedOnce: boolean;
  };
  unexpectedOrders: {
    total: number;
    /** Stored orders of requests whose outcome the client did not know (5xx, timeout, lost connection). */
    unknownOutcomeStored: number;
    /** Of those, placed. */
    unknownOutcomeStoredPlaced: number;
    /** Of those, withdrawn (requests without an Idempotency-Key: the service withdraws their orders). */
    unknownOutcomeWithdrawn: number;
    /** Stored but neither answered nor from an unknown-outcome request: a violation. */
    unexplained: number;
  };
  unknownOutcome: {
    requests: number;
    keyed: number;
    unkeyed: number;
    /** Stored in MongoDB (and so placed): the client could recover it by retrying with its key. */
    stored: number;
    notStored: number;
    /** Keyed requests whose order a later same-key retry in the run returned. */
    recoveredByLaterRetry: number;
  };
  idempotency: {
    keysWithSeveralOrders: number;
    keysWithSeveralAnsweredIds: number;
    sameKeyRetries: number;
    replaysCorrect: number;
    replaysWrong: number;
    replaysUnverified: number;
    retriesAnsweredReplayedAfterFailure: number;
    differentBodyReuses: number;
    reuse422: number;
    reuseWrong: number;
    reuseUnverified: number;
    conflicts409: number;
    conflicts409Unexplained: number;
  };
  unexpectedStatuses: number;
  deadLetters: number;
  streamPending: number | null;
  fills: FillChecks;
}

export interface AnalyzeOptions {
  /** A 409 is explained by an attempt with the same key that started at most this long before it ended. */
  inFlightWindowMs: number;
}

export interface Analysis {
  checks: Checks;
  /** One line per rule broken; empty when the run is clean. */
  violations: string[];
  /** Up to 10 examples per finding, for the report. */
  samples: Record<string, string[]>;
}

/** The ids an operation was answered 201 with, one per such attempt. */
const answeredIdsOf = (result: OpResult): string[] =>
  result.attempts.flatMap((attempt) => (attempt.status === 201 && attempt.id ? [attempt.id] : []));

const describeOrder = (order: StoredOrder) =>
  `${order._id} ${order.status} attempts=${order.attempts} parked=${order.parked_at != null}`;

export function analyze(
  results: readonly OpResult[],
  collected: Collected,
  options: AnalyzeOptions,
): Analysis {
  const violations: string[] = [];
  const samples: Record<string, string[]> = {};
  const sample = (name: string, value: string) => {
    const list = samples[name] ?? [];
    samples[name] = list;
    if (list.length < 10) list.push(value);
  };
  const { orders, venue, venueRecords } = collected;
  const byId = new Map(orders.map((order) => [order._id, order]));
  const byQuantity = new Map<number, OpResult>();
  for (const result of results) {
    if (result.op.kind !== "same-key-retry") byQuantity.set(result.op.quantity, result);
  }

  // Ids answered 201 to anyone, with the operations that got them.
  const answered = new Map<string, OpResult[]>();
  for (const result of results) {
    for (const id of answeredIdsOf(result)) {
      const list = answered.get(id) ?? [];
      if (!list.includes(result)) list.push(result);
      answered.set(id, list);
    }
  }

  let lost = 0;
  let notPlaced = 0;
  const notPlacedByStatus: Record<string, number> = {};
  for (const id of answered.keys()) {
    const order = byId.get(id);
    if (!order) {
      lost += 1;
      sample("lost", id);
      continue;
    }
    if (!isPlaced(order.status)) {
      notPlaced += 1;
      tally(notPlacedByStatus, order.status);
      sample("notPlaced", describeOrder(order));
    }
  }
  if (lost > 0) violations.push(`${lost} orders answered 201 are missing from MongoDB (lost)`);
  if (notPlaced > 0)
    violations.push(`${notPlaced} orders answered 201 are not placed (${JSON.stringify(notPlacedByStatus)})`);

  // Every order must be final once the drain ended, whoever asked for it (answered, unknown outcome,
  // or none): one left `accepted` or `placing` (parked, or forgotten by Redis and the sweeper) is one
  // the service never finished.
  let unfinished = 0;
  const unfinishedByStatus: Record<string, number> = {};
  for (const order of orders) {
    if (!OPEN_STATUSES.includes(order.status)) continue;
    unfinished += 1;
    tally(unfinishedByStatus, order.status);
    sample("unfinished", describeOrder(order));
  }
  if (unfinished > 0)
    violations.push(
      `${unfinished} orders left unfinished after the drain (${JSON.stringify(unfinishedByStatus)})`,
    );

  // MongoDB vs venue.
  let placedOrders = 0;
  let placedUnknownAtVenue = 0;
  let venueOrderIdMismatch = 0;
  let notPlacedButAtVenue = 0;
  for (const order of orders) {
    const atVenue = venueRecords.get(order._id) ?? null;
    if (isPlaced(order.status)) {
      placedOrders += 1;
      if (atVenue === null) {
        placedUnknownAtVenue += 1;
        sample("placedUnknownAtVenue", order._id);
      } else if (atVenue !== order.venue_order_id) {
        venueOrderIdMismatch += 1;
        sample("venueOrderIdMismatch", `${order._id} mongo=${order.venue_order_id} venue=${atVenue}`);
      }
    } else if (atVenue !== null) {
      notPlacedButAtVenue += 1;
      sample("notPlacedButAtVenue", `${order._id} ${order.status}`);
    }
  }
  const placedOnce = venue.orders === placedOrders;
  if (placedUnknownAtVenue > 0)
    violations.push(`${placedUnknownAtVenue} placed orders are unknown at the venue`);
  if (venueOrderIdMismatch > 0)
    violations.push(`${venueOrderIdMismatch} placed orders carry another venue order id than the venue's`);
  if (notPlacedButAtVenue > 0)
    violations.push(`${notPlacedButAtVenue} orders are at the venue but not placed in MongoDB`);
  if (!placedOnce)
    violations.push(`venue holds ${venue.orders} orders but MongoDB has ${placedOrders} placed orders`);

  // Orders nobody was told about.
  let unexpectedTotal = 0;
  let unknownOutcomeStored = 0;
  let unknownOutcomeStoredPlaced = 0;
  // Unknown outcomes without an Idempotency-Key: the service withdraws their orders (never placed).
  let unknownOutcomeWithdrawn = 0;
  let unexplained = 0;
  const storedOps = new Set<OpResult>();
  const keyOrders = new Map<string, number>();
  for (const order of orders) {
    const op = byQuantity.get(order.quantity);
    if (op) storedOps.add(op);
    if (order.idempotency_key)
      keyOrders.set(order.idempotency_key, (keyOrders.get(order.idempotency_key) ?? 0) + 1);
    if (answered.has(order._id)) continue;
    unexpectedTotal += 1;
    // The request (or one of its same-key retries) never learned this id.
    const explained = op !== undefined && op.outcome === "unknown";
    if (explained) {
      unknownOutcomeStored += 1;
      if (isPlaced(order.status)) unknownOutcomeStoredPlaced += 1;
      else if (order.status === "withdrawn" && op.op.key === null) unknownOutcomeWithdrawn += 1;
      else sample("unknownOutcomeStoredNotPlaced", `${order._id} ${order.status}`);
    } else {
      unexplained += 1;
      sample(
        "unexplainedOrders",
        `${order._id} quantity=${order.quantity} op=${op ? `${op.op.index}/${op.op.kind}/${op.outcome}` : "none"}`,
      );
    }
  }
  if (unexplained > 0)
    violations.push(
      `${unexplained} stored orders were never answered and no unknown-outcome request explains them`,
    );
  const storedNotPlaced = unknownOutcomeStored - unknownOutcomeStoredPlaced - unknownOutcomeWithdrawn;
  if (storedNotPlaced > 0)
    violations.push(
      `${storedNotPlaced} stored orders of unknown-outcome requests are neither placed nor (without a key) withdrawn`,
    );

  // Unknown outcomes, as the client saw them.
  const unknown = results.filter((r) => r.outcome === "unknown");
  const retriedIds = new Map<string, string>();
  for (const r of results)
    if (r.op.kind === "same-key-retry" && r.id && r.op.key) retriedIds.set(r.op.key, r.id);
  const unknownOutcome = {
    requests: unknown.length,
    keyed: unknown.filter((r) => r.op.key !== null).length,
    unkeyed: unknown.filter((r) => r.op.key === null).length,
    stored: unknown.filter(
      (r) =>
        storedOps.has(r) ||
        (r.op.kind === "same-key-retry" && r.op.ref !== null && storedOps.has(results[r.op.ref] as OpResult)),
    ).length,
    notStored: 0,
    recoveredByLaterRetry: unknown.filter(
      (r) => r.op.kind !== "same-key-retry" && r.op.key !== null && retriedIds.has(r.op.key),
    ).length,
  };
  unknownOutcome.notStored = unknownOutcome.requests - unknownOutcome.stored;

  // Idempotency.
  let keysWithSeveralOrders = 0;
  for (const [key, count] of keyOrders) {
    if (count > 1) {
      keysWithSeveralOrders += 1;
      sample("keysWithSeveralOrders", `${key} x${count}`);
    }
  }
  const idsPerKey = new Map<string, Set<string>>();
  for (const r of results) {
    if (!r.op.key) continue;
    for (const id of answeredIdsOf(r)) {
      const ids = idsPerKey.get(r.op.key) ?? new Set<string>();
      ids.add(id);
      idsPerKey.set(r.op.key, ids);
    }
  }
  const keysWithSeveralAnsweredIds = [...idsPerKey.values()].filter((ids) => ids.size > 1).length;
  if (keysWithSeveralOrders > 0)
    violations.push(`${keysWithSeveralOrders} idempotency keys have more than one order`);
  if (keysWithSeveralAnsweredIds > 0)
    violations.push(`${keysWithSeveralAnsweredIds} idempotency keys were answered with different order ids`);

  let replaysCorrect = 0;
  let replaysWrong = 0;
  let replaysUnverified = 0;
  let retriesAnsweredReplayedAfterFailure = 0;
  let reuse422 = 0;
  let reuseWrong = 0;
  let reuseUnverified = 0;
  let unexpectedStatuses = 0;
  for (const r of results) {
    if (r.outcome === "unexpected") {
      unexpectedStatuses += 1;
      sample("unexpectedStatuses", `${r.op.index} ${JSON.stringify(r.attempts.at(-1))}`);
    }
    if (r.op.kind !== "same-key-retry" && r.outcome === "replayed" && r.attempts.length > 1)
      retriesAnsweredReplayedAfterFailure += 1;
    const original = r.op.ref === null ? undefined : results[r.op.ref];
    if (r.op.kind === "same-key-retry") {
      if (!original?.id || r.outcome === "unknown") replaysUnverified += 1;
      else if (r.outcome === "replayed" && r.id === original.id) replaysCorrect += 1;
      else {
        replaysWrong += 1;
        sample("replaysWrong", `op ${r.op.index}: ${r.outcome} ${r.id} expected replay of ${original.id}`);
      }
    }
    if (r.op.kind === "reuse-different-body") {
      if (!original?.id || r.outcome === "unknown") reuseUnverified += 1;
      else if (r.outcome === "rejected-422") reuse422 += 1;
      else {
        reuseWrong += 1;
        sample("reuseWrong", `op ${r.op.index}: ${r.outcome} ${r.id ?? ""}`);
      }
    }
  }
  if (replaysWrong > 0) violations.push(`${replaysWrong} same-key retries did not replay the original order`);
  if (reuseWrong > 0) violations.push(`${reuseWrong} key reuses with a different body were not answered 422`);
  if (unexpectedStatuses > 0) violations.push(`${unexpectedStatuses} requests got an unexpected status`);

  // 409: only while an earlier request with the same key may still be in flight.
  const attemptsByKey = new Map<string, { startMs: number }[]>();
  for (const r of results) {
    if (!r.op.key) continue;
    const list = attemptsByKey.get(r.op.key) ?? [];
    list.push(...r.attempts);
    attemptsByKey.set(r.op.key, list);
  }
  let conflicts409 = 0;
  let conflicts409Unexplained = 0;
  for (const r of results) {
    for (const a of r.attempts) {
      if (a.status !== 409 || !r.op.key) continue;
      conflicts409 += 1;
      const endMs = a.startMs + a.latencyMs;
      const explained = (attemptsByKey.get(r.op.key) ?? []).some(
        (other) =>
          other !== a && other.startMs <= a.startMs && endMs - other.startMs <= options.inFlightWindowMs,
      );
      if (!explained) {
        conflicts409Unexplained += 1;
        sample("conflicts409Unexplained", `op ${r.op.index} key ${r.op.key} at ${a.startMs.toFixed(0)} ms`);
      }
    }
  }
  if (conflicts409Unexplained > 0)
    violations.push(`${conflicts409Unexplained} 409 answers with no request of that key in flight`);

  const fills = checkFills(collected.fills);
  violations.push(...fills.violations);
  for (const m of fills.verdict.mismatched)
    sample("fillsMismatched", `${m.order_id} venue=${m.venue} executed=${m.executed} summary=${m.summary}`);
  for (const id of fills.verdict.overfilled) sample("fillsOverfilled", id);
  for (const w of fills.verdict.wrongStatus)
    sample("fillsWrongStatus", `${w.order_id} venue=${w.venue} status=${w.status}`);
  for (const line of collected.fills.evidence ?? []) sample("fillsEvidence", line);

  const checks: Checks = {
    answeredIds: answered.size,
    lost,
    notPlaced,
    notPlacedByStatus,
    storedOrders: orders.length,
    placedOrders,
    unfinished,
    venue: {
      orders: venue.orders,
      submissions: venue.submissions,
      duplicates: venue.duplicates,
      failures: venue.failures,
      placedUnknownAtVenue,
      venueOrderIdMismatch,
      notPlacedButAtVenue,
      placedOnce,
    },
    unexpectedOrders: {
      total: unexpectedTotal,
      unknownOutcomeStored,
      unknownOutcomeStoredPlaced,
      unknownOutcomeWithdrawn,
      unexplained,
    },
    unknownOutcome,
    idempotency: {
      keysWithSeveralOrders,
      keysWithSeveralAnsweredIds,
      sameKeyRetries: results.filter((r) => r.op.kind === "same-key-retry").length,
      replaysCorrect,
      replaysWrong,
      replaysUnverified,
      retriesAnsweredReplayedAfterFailure,
      differentBodyReuses: results.filter((r) => r.op.kind === "reuse-different-body").length,
      reuse422,
      reuseWrong,
      reuseUnverified,
      conflicts409,
      conflicts409Unexplained,
    },
    unexpectedStatuses,
    deadLetters: collected.deadLetters,
    streamPending: collected.streamPending,
    fills: fills.checks,
  };
  return { checks, violations, samples };
}
