/**
 * The ports the order service and the placement actors depend on. Adapters implement them
 * (MongoOrderRepository, RedisPlacementDispatcher); tests may drive them with doubles.
 */
import type { OrderRecord, OrderStatus } from "./order.ts";

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
  | "_id"
  | "partition"
  | "sweep_at"
  | "type"
  | "side"
  | "instrument"
  | "limit_price_cents"
  | "quantity"
  | "account"
>;

/** Which orders of an account GET /orders asks for: `before` is the last id of the previous page. */
export interface OrderListPage {
  status?: OrderStatus;
  before?: string;
  limit: number;
}

export interface OrderRepository {
  /** Inserts durably (write concern majority + journal). Throws DuplicateOrderIdError if the id exists. */
  insert(order: OrderRecord): Promise<void>;
  /** Reads an order; `majority` reads only what is majority-committed (used after an ambiguous write). */
  findById(id: string, options?: { majority?: boolean }): Promise<OrderRecord | null>;
  /** One page of an account's orders, newest first. */
  listForAccount(account: string, page: OrderListPage): Promise<OrderRecord[]>;
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
  /** The same, within one sweep bucket of one partition (an equality look-up: see sweepBucketOf). */
  findDueInBucket(
    bucket: number,
    now: Date,
    limit: number,
    options: { partition: number; after?: Date },
  ): Promise<DispatchCandidate[]>;
  /** Its stream entry was dead-lettered: keep the sweeper away until an operator replays it. */
  park(id: string, reason: string, now: Date): Promise<void>;
  /**
   * Makes the order `withdrawn` unless it is already final: a conditional update when it is stored,
   * else the `tombstone` inserted under its id (so that an insert still on its way fails as a
   * duplicate). Returns the status the order has afterwards, or null when it is not stored and no
   * tombstone was given.
   */
  withdraw(id: string, now: Date, tombstone?: OrderRecord): Promise<OrderStatus | null>;
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
> & {
  /** Whose order it is, so that the outcome reaches the account's event feed (absent on older entries). */
  account?: string;
};

/**
 * Appends an order to its placement stream unless Redis already tracks it (queued, leased, scheduled for
 * a retry or done): true when an entry was added.
 */
/**
 * What a dispatch did: `added` an entry to the stream; nothing because Redis already `tracked` the order
 * (queued, leased, waiting for a retry, done); or nothing because the order is being `withdrawn`.
 */
export type DispatchResult = "added" | "tracked" | "withdrawn";

/** How far the withdrawal of an order got in Redis: fenced, or not possible (an actor holds it / it is done). */
export type WithdrawalFence = "fenced" | "held" | "placed" | "rejected";

export interface PlacementDispatcher {
  dispatch(order: DispatchedOrder, source: "intake" | "sweep" | "replay"): Promise<DispatchResult>;
  /**
   * Fences an order off from placement (no actor may lease it, no dispatch may add it) for a long
   * while: the durable intent of a withdrawal until MongoDB has it.
   */
  fenceForWithdrawal(order: Pick<OrderRecord, "_id" | "partition">): Promise<WithdrawalFence>;
}

/** What Redis says of an order when an actor asks for its lease. */
export type LeaseAnswer = "acquired" | "held" | "done";

/**
 * The per-order placement state in Redis (docs/adr/0002-placement-lease-and-fencing.md): queued, leased by one
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

/**
 * One update of an order as its account's event feed (WebSocket /orders/events) carries it. Published
 * after the change is durable in MongoDB; the feed is a notification, GET /orders/{id} stays the truth.
 */
export interface OrderEvent {
  order_id: string;
  account: string;
  status: OrderStatus;
  /** When the change happened (the venue's time for an execution). */
  at: Date;
  filled_quantity: number;
  /** Average price of the applied trades in cents (fractional), or null before the first trade. */
  average_price_cents: number | null;
  /** The execution that caused the update, when one did. */
  execution?: {
    exec_id: string;
    exec_type: "trade" | "cancelled" | "expired";
    quantity: number;
    price_cents: number | null;
  };
  rejection_reason?: string | null;
}

export interface OrderEventPublisher {
  /** Appends the event to its account's feed; never throws (a lost event is logged and counted). */
  publish(event: OrderEvent): Promise<void>;
}
