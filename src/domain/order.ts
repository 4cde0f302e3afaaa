/**
 * The order as the system keeps it, and its lifecycle. A transition only ever moves forward:
 * accepted -> placing -> placed | rejected, and placing -> accepted when an attempt failed transiently
 * (the order waits for its retry). accepted -> withdrawn when its client was answered 500 without an
 * Idempotency-Key: the order may have been stored, but nobody will ever learn it was, so it must never
 * be placed. Execution reports (src/domain/execution.ts) move a placed order on to partially_filled,
 * filled, cancelled or expired; a report may arrive before the placement's acknowledgement is written,
 * so accepted and placing may move there directly (the report proves the venue has the order).
 */
import type { Cents } from "./money.ts";

export const ORDER_STATUSES = [
  "accepted",
  "placing",
  "placed",
  "rejected",
  "partially_filled",
  "filled",
  "cancelled",
  "expired",
  "withdrawn",
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];
export type OrderType = "market" | "limit";
export type OrderSide = "buy" | "sell";

const EXECUTED: readonly OrderStatus[] = ["partially_filled", "filled", "cancelled", "expired"];

const NEXT: Record<OrderStatus, readonly OrderStatus[]> = {
  // accepted -> placed: a holder whose lease expired learns from the venue that its attempt landed.
  accepted: ["placing", "placed", "withdrawn", ...EXECUTED],
  placing: ["placed", "rejected", "accepted", ...EXECUTED],
  placed: EXECUTED,
  // Trades reported before the end still count: a partial fill may end cancelled or expired.
  partially_filled: EXECUTED,
  rejected: [],
  filled: [],
  cancelled: [],
  expired: [],
  withdrawn: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return NEXT[from].includes(to);
}

/** Statuses after which the exchange must never be called again for this order. */
export function isPlacementFinal(status: OrderStatus): boolean {
  return status !== "accepted" && status !== "placing";
}

/** What a validated request becomes: exact, normalised, ready to store. */
export interface OrderDraft {
  type: OrderType;
  side: OrderSide;
  instrument: string;
  limitPriceCents: Cents | null;
  quantity: number;
}

/** The stored order (MongoDB `orders`). Field names are the document's. */
export interface OrderRecord {
  _id: string;
  type: OrderType;
  side: OrderSide;
  instrument: string;
  limit_price_cents: number | null;
  quantity: number;
  status: OrderStatus;
  attempts: number;
  created_at: Date;
  updated_at: Date;
  /** Placement stream partition the order belongs to (hash of its id). */
  partition: number;
  /** Earliest time an actor may claim it (retry backoff gate). */
  next_attempt_at: Date;
  /** When the sweeper should (re-)dispatch it if it is still waiting. */
  sweep_at: Date;
  /**
   * `sweepBucketOf(sweep_at)` while the order waits (accepted, not parked); removed once it no longer
   * does. The sweeper looks for due orders by equality on it (see sweepBucketOf). Absent too on orders
   * stored before it existed: the sweeper's full pass finds those.
   */
  sweep_bucket?: number;
  /** Set while an actor holds the order in `placing`; past it the claim is stale. */
  lease_until: Date | null;
  lease_token: string | null;
  /**
   * Random id of the write that recorded the final outcome (placed, rejected): a batched final write
   * reads it back to tell its own update from another one (MongoOrderRepository.finish).
   */
  final_write_id?: string;
  placed_at: Date | null;
  venue_order_id: string | null;
  rejection_reason: string | null;
  last_error: string | null;
  /** XADD at intake failed: the sweeper dispatches it. */
  dispatch_failed_at: Date | null;
  /** Set when its stream entry went to the dead-letter stream: the sweeper leaves it alone until replayed. */
  parked_at: Date | null;
  redispatches: number;
  /** The client account that placed it (its API key's account); only that account can read it. */
  account: string;
  /** The client's Idempotency-Key, unique per account (not globally). */
  idempotency_key: string | null;
  /** Shares the applied trades filled (execution reports; absent until the first one). */
  filled_quantity?: number;
  /** Sum of quantity x price over the applied trades, in cents. */
  filled_notional_cents?: number;
  /**
   * Executions stored for the order (applied and flagged; they live in `executions`): the version the
   * execution actors write the summary against.
   */
  execution_count?: number;
}

/**
 * Width of a sweep bucket: the due times one equality look-up covers. Narrow, because the monitor's look-up
 * reads every waiting order of the bucket it stops at (about a second of intake); the sweeper's recent
 * pass makes one look-up per bucket.
 */
export const SWEEP_BUCKET_MS = 1_000;

/**
 * The sweep bucket of a due time: a number the sweeper can find orders by with an equality filter,
 * which every store serves from an index (FerretDB passes only equality down to PostgreSQL, so a range
 * on `sweep_at` made it read every waiting order, however few were due).
 */
export function sweepBucketOf(sweepAt: Date): number {
  return Math.floor(sweepAt.getTime() / SWEEP_BUCKET_MS);
}

/** The fields that make a waiting order due at `sweepAt`: its due time and that time's sweep bucket. */
export function dueAt(sweepAt: Date): Pick<OrderRecord, "sweep_at" | "sweep_bucket"> {
  return { sweep_at: sweepAt, sweep_bucket: sweepBucketOf(sweepAt) };
}

/** Deterministic partition of an order id, so every process agrees on the stream of an order. */
export function partitionOf(orderId: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let hash = 2166136261;
  for (let i = 0; i < orderId.length; i++) {
    hash ^= orderId.charCodeAt(i);
    hash = Math.imul(hash, 16777619);
  }
  return (hash >>> 0) % partitions;
}

export function newOrderRecord(
  id: string,
  draft: OrderDraft,
  now: Date,
  options: { partitions: number; dispatchGraceMs: number; idempotencyKey: string | null; account: string },
): OrderRecord {
  return {
    _id: id,
    type: draft.type,
    side: draft.side,
    instrument: draft.instrument,
    limit_price_cents: draft.limitPriceCents,
    quantity: draft.quantity,
    status: "accepted",
    attempts: 0,
    created_at: now,
    updated_at: now,
    partition: partitionOf(id, options.partitions),
    next_attempt_at: now,
    ...dueAt(new Date(now.getTime() + options.dispatchGraceMs)),
    lease_until: null,
    lease_token: null,
    placed_at: null,
    venue_order_id: null,
    rejection_reason: null,
    last_error: null,
    dispatch_failed_at: null,
    parked_at: null,
    redispatches: 0,
    account: options.account,
    idempotency_key: options.idempotencyKey,
  };
}
