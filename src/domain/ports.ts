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

export interface OrderRepository {
  /** Inserts durably (write concern majority + journal). Throws DuplicateOrderIdError if the id exists. */
  insert(order: OrderRecord): Promise<void>;
  /** Reads an order; `majority` reads only what is majority-committed (used after an ambiguous write). */
  findById(id: string, options?: { majority?: boolean }): Promise<OrderRecord | null>;
  /** Marks an order whose intake XADD failed as due for dispatch now. */
  markDispatchFailed(id: string, now: Date): Promise<void>;
  /**
   * Takes the order for one placement attempt: accepted (and due) or placing with an expired lease ->
   * placing, attempts + 1, a new lease. Returns null when the order is not claimable.
   */
  claim(id: string, now: Date, leaseMs: number, token: string): Promise<OrderRecord | null>;
  /** accepted|placing -> placed. False when the order was already final. */
  markPlaced(id: string, venueOrderId: string, now: Date): Promise<boolean>;
  /** placing -> rejected with a reason. */
  markRejected(id: string, reason: string, now: Date): Promise<boolean>;
  /** placing (held by `token`) -> accepted, to be retried at `retryAt`. */
  release(id: string, token: string, retryAt: Date, lastError: string, now: Date): Promise<boolean>;
  /** Accepted orders whose sweep time passed, oldest first. */
  findDueForDispatch(
    now: Date,
    limit: number,
  ): Promise<Pick<OrderRecord, "_id" | "partition" | "sweep_at" | "redispatches">[]>;
  /** Pushes the next sweep of an accepted order out; false when another sweeper (or an actor) got there first. */
  rescheduleSweep(id: string, expectedSweepAt: Date, nextSweepAt: Date): Promise<boolean>;
  /** Undoes a rescheduleSweep whose dispatch failed (Redis down): the order stays due, its backoff unchanged. */
  restoreSweep(id: string, expectedSweepAt: Date, originalSweepAt: Date): Promise<void>;
  /** Orders in placing whose lease expired (their holder died or hung). */
  findStalePlacing(
    now: Date,
    limit: number,
  ): Promise<Pick<OrderRecord, "_id" | "partition" | "lease_token">[]>;
  /** placing with an expired lease -> accepted, due now. */
  expireLease(id: string, token: string | null, now: Date, nextSweepAt: Date): Promise<boolean>;
  /** Its stream entry was dead-lettered: keep the sweeper away until an operator replays it. */
  park(id: string, reason: string, now: Date): Promise<void>;
  /** Replay: unpark, and make a stuck `placing` claimable again. Returns the order, or null if unknown. */
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

/** Appends an order to its placement stream. */
export interface PlacementDispatcher {
  dispatch(order: Pick<OrderRecord, "_id" | "partition">): Promise<void>;
}
