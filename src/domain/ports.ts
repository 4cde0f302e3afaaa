/**
 * The ports the order service and the placement actors depend on. Adapters implement them
 * (MongoOrderRepository, RedisPlacementDispatcher); tests may drive them with doubles.
 */
import type { OrderRecord } from "./order.ts";

export interface Clock {
  now(): Date;
}
export const systemClock: Clock = { now: () => new Date() };

export class DuplicateOrderIdError extends Error {
  readonly code = "DUPLICATE_ORDER_ID";
  constructor(readonly orderId: string) {
    super(`order ${orderId} exists already`);
    this.name = "DuplicateOrderIdError";
  }
}

/** Outcome of a final write: applied now, the same outcome already there, another one there, or no order. */
export type FinalWriteResult = "applied" | "already" | "conflict" | "missing";

/** What the sweeper needs to put an order on its stream again: its id, partition and the order itself. */
export type DispatchCandidate = Pick<
  OrderRecord,
  "_id" | "partition" | "sweep_at" | "type" | "side" | "instrument" | "limit_price_cents" | "quantity"
>;

export interface OrderRepository {
  /** Inserts durably (write concern majority + journal). Throws DuplicateOrderIdError if the id exists. */
  insert(order: OrderRecord): Promise<void>;
  /** Reads an order; `majority` reads only what is majority-committed (used after an ambiguous write). */
  findById(id: string, options?: { majority?: boolean }): Promise<OrderRecord | null>;
  /** Marks an order whose intake XADD failed as due for dispatch now. */
  markDispatchFailed(id: string, now: Date): Promise<void>;
  /** Unfinished -> placed, with the number of venue attempts it took; idempotent on the venue's order id. */
  markPlaced(id: string, venueOrderId: string, now: Date, attempts?: number): Promise<FinalWriteResult>;
  /** Unfinished -> rejected with a reason. */
  markRejected(id: string, reason: string, now: Date, attempts?: number): Promise<FinalWriteResult>;
  /** Accepted orders whose sweep time passed, oldest first, optionally of one partition and from a cursor on. */
  findDueForDispatch(
    now: Date,
    limit: number,
    options?: { partition?: number; after?: Date },
  ): Promise<DispatchCandidate[]>;
  /** Its stream entry was dead-lettered: keep the sweeper away until an operator replays it. */
  park(id: string, reason: string, now: Date): Promise<void>;
  /** Replay: unpark and make it due now. Returns the order, or null if unknown. */
  unpark(id: string, now: Date): Promise<OrderRecord | null>;
}

export interface IdempotencyRecord {
  key: string;
  requestHash: string;
  orderId: string;
  claimedAt: Date;
}

export interface IdempotencyStore {
  /** Claims `key` for `orderId`; when the key exists, returns the existing record instead. */
  claim(
    record: IdempotencyRecord,
    expiresAt: Date,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord | null }>;
  /** Takes over a claim whose holder is presumed dead; false when someone else changed it first. */
  takeOver(key: string, expectedClaimedAt: Date, now: Date): Promise<boolean>;
  /** Lets the next retry take the key over at once (the holder failed and knows it). */
  release(key: string, claimedAt: Date): Promise<void>;
}

/** The fields of an order that travel on its stream entry, so that an actor needs no read to place it. */
export type DispatchedOrder = Pick<
  OrderRecord,
  "_id" | "partition" | "type" | "side" | "instrument" | "limit_price_cents" | "quantity"
>;

/**
 * Appends an order to its placement stream unless Redis already tracks it (queued, leased, scheduled for
 * a retry or done): true when an entry was added.
 */
export interface PlacementDispatcher {
  dispatch(order: DispatchedOrder, source: "intake" | "sweep" | "replay"): Promise<boolean>;
}

/** What Redis says of an order when an actor asks for its lease. */
export type LeaseAnswer = "acquired" | "held" | "done";

/**
 * The per-order placement state in Redis (docs/adr/0002-leases-and-fencing.md): queued, leased by one
 * actor (a token, expiring on the Redis server's clock), scheduled for a retry, or done. MongoDB stays
 * the source of truth for the outcome; this only decides who works on an order now.
 */
export interface PlacementLeases {
  acquire(
    order: Pick<OrderRecord, "_id" | "partition">,
    token: string,
    leaseMs: number,
  ): Promise<LeaseAnswer>;
  /** The outcome is durable in MongoDB: later entries of this order are acknowledged without work. */
  finish(order: Pick<OrderRecord, "_id" | "partition">, outcome: string): Promise<void>;
  /**
   * Hands the order to the retry schedule (it returns to the stream at `dueAt`) if `token` still holds
   * the lease or nobody does; false when another actor holds it (that one decides).
   */
  scheduleRetry(order: DispatchedOrder, token: string, dueAt: Date, attempt: number): Promise<boolean>;
  /** Gives the lease up (shutdown mid-attempt): the pending entry is reclaimed and the order worked again. */
  release(order: Pick<OrderRecord, "_id" | "partition">, token: string): Promise<void>;
}
