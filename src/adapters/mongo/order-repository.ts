/**
 * The `orders` collection. Two durable writes per order on the happy path: the insert at intake
 * (group-committed with concurrent requests into one insertMany) and the final outcome (a conditional
 * update, idempotent on the venue's ack, group-committed with the process's concurrent outcomes into
 * one unordered bulkWrite). Who works on an order is decided by a lease in Redis, not by a write here
 * (docs/adr/0002-placement-lease-and-fencing.md).
 */
import {
  type Collection,
  type Db,
  type IndexDescription,
  Long,
  MongoBulkWriteError,
  MongoServerError,
} from "mongodb";
import { isExecutionStatus } from "../../domain/execution.ts";
import { dueAt, type OrderRecord, type OrderStatus } from "../../domain/order.ts";
import {
  type DispatchCandidate,
  DuplicateOrderIdError,
  type FinalWriteResult,
  type OrderListPage,
  type OrderRepository,
} from "../../domain/ports.ts";
import {
  boundedInFlight,
  DUPLICATE_KEY,
  durableWrite,
  ensureIndexes,
  type InFlightGate,
  operationDeadline,
  scanDeadline,
  storedAllOthers,
  writeErrorsByIndex,
} from "./client.ts";
import { createFinalOutcomeBatches } from "./final-outcome-batches.ts";
import { createGroupCommit } from "./group-commit.ts";

type OrderDocument = Omit<OrderRecord, "limit_price_cents"> & { limit_price_cents: Long | number | null };

export interface OrderRepositorySettings {
  timeoutMs: number;
  /** Bound on this process's operations waiting on MongoDB (backpressure); unbounded when absent. */
  gate?: InFlightGate;
  /** Intake group commit: how long the first order of a batch waits for company, and the batch cap. */
  insertWindowMs?: number;
  insertMaxBatch?: number;
  /** Documents written durably, by kind (insert, final, park, ...). */
  onDurableWrite?(kind: string, documents: number): void;
}

/** The sweeper's and the monitor's queries, and GET /orders (on MongoDB; see ensureIndexes). */
export const ORDER_INDEXES: IndexDescription[] = [
  // Waiting orders only: the field is removed once an order stops waiting.
  {
    key: { sweep_bucket: 1, partition: 1, sweep_at: 1 },
    name: "sweep_bucket_partition_sweep_at",
    partialFilterExpression: { sweep_bucket: { $exists: true } },
  },
  // The sweeper's full pass (orders stored before sweep_bucket existed, or missed by the recent passes).
  { key: { status: 1, sweep_at: 1 }, name: "status_sweep_at" },
  { key: { status: 1, created_at: 1 }, name: "status_created_at" },
  // GET /orders: an account's orders newest first (ids are UUIDv7, so id order is time order).
  { key: { account: 1, _id: -1 }, name: "account_id" },
  { key: { account: 1, status: 1, _id: -1 }, name: "account_status_id" },
];

const UNFINISHED: OrderStatus[] = ["accepted", "placing"];
/**
 * An order that stops waiting (final, parked, withdrawn) loses its sweep bucket: removed, not nulled, so
 * that the bucket indexes (partial: FerretDB's GIN index in scripts/ferretdb-postgres.sql, MongoDB's in
 * ORDER_INDEXES) hold waiting orders only and a final write adds no entry to them.
 */
const NO_LONGER_WAITING = { sweep_bucket: "" } as const;
/** Orders waiting to be placed: unfinished and not parked. */
const WAITING = { status: "accepted", parked_at: null } as const;
/** Parked orders, by equality only: FerretDB passes it down to PostgreSQL instead of reading every order. */
const PARKED = { status: "accepted", parked: true } as const;
/**
 * The orders `orders reconcile` checks against the venue: those the service says are not there, and
 * those it says were placed and has had no report of since (a fill or an end makes the venue's own
 * report the proof).
 */
export type ReconciledKind = "withdrawn" | "rejected" | "parked" | "placed";

export class MongoOrderRepository implements OrderRepository {
  readonly collection: Collection<OrderDocument>;
  private readonly gate: InFlightGate;
  private readonly inserts;
  private readonly finals;

  constructor(
    private readonly db: Db,
    private readonly settings: OrderRepositorySettings,
    collectionName = "orders",
  ) {
    this.collection = db.collection<OrderDocument>(collectionName);
    this.gate = settings.gate ?? boundedInFlight(Number.POSITIVE_INFINITY);
    this.inserts = createGroupCommit<OrderDocument>({
      windowMs: settings.insertWindowMs ?? 2,
      maxBatch: settings.insertMaxBatch ?? 64,
      maxConcurrentFlushes: 4,
      // A quiet API answers at the store's latency; a busy one batches while inserts are in flight.
      flushWhenIdle: true,
      flush: (documents) => this.insertBatch(documents),
    });
    this.finals = createFinalOutcomeBatches({
      collection: this.collection,
      gate: this.gate,
      durable: () => this.durable(),
      onWritten: (documents) => this.counted("final", documents),
    });
  }

  private durable() {
    return durableWrite(this.settings.timeoutMs);
  }

  private deadline() {
    return operationDeadline(this.settings.timeoutMs);
  }

  private scanDeadline() {
    return scanDeadline(this.settings.timeoutMs);
  }

  private counted(kind: string, documents = 1) {
    this.settings.onDurableWrite?.(kind, documents);
  }

  /** Idempotent: safe on every start of every process. */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.db, this.collection, ORDER_INDEXES);
  }

  /** Group-committed: the caller's promise settles with its own document's result. */
  async insert(order: OrderRecord): Promise<void> {
    await this.inserts.submit(toDocument(order));
  }

  /**
   * One unordered insertMany for the batch. A duplicate id fails only its own order; a write-concern
   * error or a network error leaves every order of the batch ambiguous (the service reads each back).
   */
  private async insertBatch(documents: OrderDocument[]): Promise<(Error | null)[]> {
    try {
      await this.gate.run(() => this.collection.insertMany(documents, { ordered: false, ...this.durable() }));
      this.counted("insert", documents.length);
      return documents.map(() => null);
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError)) return documents.map(() => error as Error);
      const failed = writeErrorsByIndex(error, (code, index) =>
        code === DUPLICATE_KEY ? new DuplicateOrderIdError(documents[index]!._id) : undefined,
      );
      // Otherwise each of the rest is ambiguous (the service reads it back before answering).
      const certain = storedAllOthers(error, documents.length, failed.size);
      if (certain) this.counted("insert", documents.length - failed.size);
      return documents.map((_, i) => failed.get(i) ?? (certain ? null : error));
    }
  }

  async findById(id: string, options: { majority?: boolean } = {}): Promise<OrderRecord | null> {
    const document = await this.gate.run(() =>
      this.collection.findOne(
        { _id: id },
        options.majority ? { readConcern: { level: "majority" }, ...this.deadline() } : this.deadline(),
      ),
    );
    return document ? fromDocument(document) : null;
  }

  /** One page of an account's orders, newest first, older than the `before` id when given. */
  async listForAccount(account: string, page: OrderListPage): Promise<OrderRecord[]> {
    const documents = await this.gate.run(() =>
      this.collection
        .find(
          {
            account,
            ...(page.status === undefined ? {} : { status: page.status }),
            ...(page.before === undefined ? {} : { _id: { $lt: page.before } }),
          },
          this.deadline(),
        )
        .sort({ _id: -1 })
        .limit(page.limit)
        .toArray(),
    );
    return documents.map(fromDocument);
  }

  async markDispatchFailed(id: string, now: Date): Promise<void> {
    await this.gate.run(() =>
      this.collection.updateOne(
        { _id: id, status: "accepted" },
        { $set: { dispatch_failed_at: now, ...dueAt(now) } },
        this.durable(),
      ),
    );
    this.counted("dispatch_failed");
  }

  markPlaced(id: string, venueOrderId: string, now: Date, attempts = 1): Promise<FinalWriteResult> {
    return this.finish(
      id,
      { status: "placed", placed_at: now, venue_order_id: venueOrderId, updated_at: now, attempts },
      // Execution reports applied before the acknowledgement was written prove the same placement.
      (current) =>
        (current.status === "placed" && current.venue_order_id === venueOrderId) ||
        isExecutionStatus(current.status),
    );
  }

  markRejected(id: string, reason: string, now: Date, attempts = 1): Promise<FinalWriteResult> {
    return this.finish(
      id,
      { status: "rejected", rejection_reason: reason, updated_at: now, attempts },
      (current) => current.status === "rejected",
    );
  }

  /**
   * The final outcome: conditional on the order being unfinished, so the first outcome wins. Sent with
   * the process's concurrent outcomes in one bulkWrite; when this order's update did not match (or the
   * bulk could not say), the order is read back: this write's own outcome there is success, the same
   * outcome from another write (a retried write, a second actor after a lost lease) is "already", another
   * final state a conflict the caller counts.
   */
  private async finish(
    id: string,
    fields: Partial<OrderDocument>,
    isSameOutcome: (current: OrderRecord) => boolean,
  ): Promise<FinalWriteResult> {
    const writeId = crypto.randomUUID();
    const answer = await this.finals.submit({
      filter: { _id: id, status: { $in: UNFINISHED } },
      update: {
        $set: { ...fields, final_write_id: writeId, lease_until: null, lease_token: null },
        $unset: NO_LONGER_WAITING,
      },
    });
    if (answer === "matched") return "applied";
    const current = await this.findById(id, { majority: true });
    if (current === null) return "missing";
    if (current.final_write_id === writeId) return "applied";
    return isSameOutcome(current) ? "already" : "conflict";
  }

  /**
   * Unfinished orders whose sweep time passed, oldest first, from `after` on (a cursor that the sweeper
   * carries across passes, so that orders still on the stream do not hide those behind them). The
   * sweeper's full pass: on FerretDB it reads every waiting order of the partition (only the equality on
   * `status` reaches PostgreSQL), so the sweeper runs it seldom and looks in the sweep buckets between.
   */
  findDueForDispatch(
    now: Date,
    limit: number,
    options: { partition?: number; after?: Date } = {},
  ): Promise<DispatchCandidate[]> {
    return this.findDue(
      options.partition === undefined ? {} : { partition: options.partition },
      now,
      limit,
      options.after,
    );
  }

  /**
   * The due orders of one sweep bucket (see sweepBucketOf), oldest first, from `after` on: equality on
   * the bucket, the partition and the status, so the store reads only the orders waiting in that bucket
   * (on FerretDB through a GIN index on `sweep_bucket`, scripts/ferretdb-postgres.sql).
   */
  findDueInBucket(
    bucket: number,
    now: Date,
    limit: number,
    options: { partition: number; after?: Date },
  ): Promise<DispatchCandidate[]> {
    return this.findDue({ sweep_bucket: bucket, partition: options.partition }, now, limit, options.after);
  }

  private async findDue(
    equalities: Record<string, unknown>,
    now: Date,
    limit: number,
    after: Date | undefined,
  ): Promise<DispatchCandidate[]> {
    const documents = await this.gate.run(() =>
      this.collection
        .find(
          { ...WAITING, ...equalities, sweep_at: after ? { $gte: after, $lte: now } : { $lte: now } },
          {
            projection: {
              _id: 1,
              partition: 1,
              sweep_at: 1,
              type: 1,
              side: 1,
              instrument: 1,
              limit_price_cents: 1,
              quantity: 1,
              account: 1,
            },
            ...this.scanDeadline(),
          },
        )
        .sort({ sweep_at: 1 })
        .limit(limit)
        .toArray(),
    );
    return documents.map((document) => withNumberCents(document) as DispatchCandidate);
  }

  /**
   * The oldest unfinished order per status (accepted, placing), parked ones aside (they have their own
   * gauge): the end-to-end monitor's full look-up. On FerretDB it reads every waiting order.
   */
  async oldestUnfinished(
    statuses: OrderStatus[] = UNFINISHED,
  ): Promise<{ status: OrderStatus; created_at: Date }[]> {
    const oldest = await Promise.all(
      statuses.map((status) =>
        this.gate.run(() =>
          this.collection.findOne(
            { status, parked_at: null },
            { projection: { status: 1, created_at: 1 }, sort: { created_at: 1 }, ...this.scanDeadline() },
          ),
        ),
      ),
    );
    return oldest.filter((document) => document !== null);
  }

  /** The earliest due time of a waiting order (parked ones aside), or null: reads every waiting order on FerretDB. */
  async earliestWaitingSweepAt(): Promise<Date | null> {
    const document = await this.gate.run(() =>
      this.collection.findOne(WAITING, {
        projection: { sweep_at: 1 },
        sort: { sweep_at: 1 },
        ...this.scanDeadline(),
      }),
    );
    return document?.sweep_at ?? null;
  }

  /** The oldest waiting order of one sweep bucket (any partition), by creation: an equality look-up. */
  async oldestWaitingInBucket(bucket: number): Promise<Date | null> {
    const document = await this.gate.run(() =>
      this.collection.findOne(
        { ...WAITING, sweep_bucket: bucket },
        { projection: { created_at: 1 }, sort: { created_at: 1 }, ...this.scanDeadline() },
      ),
    );
    return document?.created_at ?? null;
  }

  /** Unfinished orders parked after a dead-lettered entry (the end-to-end monitor's second input). */
  async countParked(): Promise<number> {
    return this.gate.run(() => this.collection.countDocuments(PARKED, this.scanDeadline()));
  }

  /**
   * Parked orders (MongoDB is their source of truth: the dead-letter stream may be lost with Redis),
   * oldest parked first, for `orders dlq list|replay --all`.
   */
  async findParked(
    limit: number,
  ): Promise<{ _id: string; partition: number; parked_at: Date | null; last_error: string | null }[]> {
    const documents = await this.gate.run(() =>
      this.collection
        .find(PARKED, {
          projection: { _id: 1, partition: 1, parked_at: 1, last_error: 1 },
          ...this.scanDeadline(),
        })
        .sort({ parked_at: 1 })
        .limit(limit)
        .toArray(),
    );
    return documents.map((document) => ({
      _id: document._id,
      partition: document.partition,
      parked_at: document.parked_at ?? null,
      last_error: document.last_error ?? null,
    }));
  }

  /**
   * Orders of one `ReconciledKind` created at `since` or later, at most `limit`, for `orders
   * reconcile`. By equality on the status (FerretDB passes it down to PostgreSQL and filters the
   * creation time itself; MongoDB serves both from `status_created_at`). The unplaced kinds are few;
   * `placed` holds the orders at the venue with no report yet, which fills and ends keep few too.
   */
  async findForReconciliation(
    kind: ReconciledKind,
    since: Date,
    limit: number,
  ): Promise<Pick<OrderRecord, "_id" | "status" | "created_at" | "venue_order_id">[]> {
    const filter = kind === "parked" ? PARKED : { status: kind };
    return this.gate.run(() =>
      this.collection
        .find(
          { ...filter, created_at: { $gte: since } },
          { projection: { _id: 1, status: 1, created_at: 1, venue_order_id: 1 }, ...this.scanDeadline() },
        )
        .limit(limit)
        .toArray(),
    );
  }

  /**
   * Its stream entry was dead-lettered, or its placement attempts ran out: the sweeper leaves it alone
   * until an operator replays it.
   */
  async park(id: string, reason: string, now: Date): Promise<void> {
    await this.gate.run(() =>
      this.collection.updateOne(
        { _id: id, status: { $in: UNFINISHED } },
        {
          $set: { parked_at: now, parked: true, last_error: reason, updated_at: now },
          $unset: NO_LONGER_WAITING,
        },
        this.durable(),
      ),
    );
    this.counted("park");
  }

  async withdraw(id: string, now: Date, tombstone?: OrderRecord): Promise<OrderStatus | null> {
    if (tombstone) {
      try {
        // Stored under its id first, the withdrawn order makes an insert still on its way fail as a
        // duplicate: the order can never appear as accepted.
        await this.gate.run(() =>
          this.collection.insertOne(
            { ...withoutSweepBucket(toDocument(tombstone)), status: "withdrawn", updated_at: now },
            this.durable(),
          ),
        );
        this.counted("withdraw");
        return "withdrawn";
      } catch (error) {
        if (!(error instanceof MongoServerError) || error.code !== DUPLICATE_KEY) throw error;
      }
    }
    const result = await this.gate.run(() =>
      this.collection.updateOne(
        { _id: id, status: { $in: UNFINISHED } },
        {
          $set: { status: "withdrawn", updated_at: now, lease_until: null, lease_token: null },
          $unset: NO_LONGER_WAITING,
        },
        this.durable(),
      ),
    );
    this.counted("withdraw");
    if (result.matchedCount === 1) return "withdrawn";
    return (await this.findById(id, { majority: true }))?.status ?? null;
  }

  /** Replay: unparks the order and makes it due now. Returns the order, or null if unknown. */
  async unpark(id: string, now: Date): Promise<OrderRecord | null> {
    const document = await this.gate.run(() =>
      this.collection.findOneAndUpdate(
        { _id: id },
        {
          $set: { parked_at: null, parked: false, ...dueAt(now), updated_at: now },
        },
        { returnDocument: "after", ...this.durable() },
      ),
    );
    this.counted("unpark");
    return document ? fromDocument(document) : null;
  }
}

/** The order as stored: its price as int64 (exact beyond 2^31 cents). */
function toDocument(order: OrderRecord): OrderDocument {
  return {
    ...order,
    limit_price_cents: order.limit_price_cents === null ? null : Long.fromNumber(order.limit_price_cents),
  };
}

function withoutSweepBucket(document: OrderDocument): OrderDocument {
  const { sweep_bucket: _, ...rest } = document;
  return rest;
}

/** A stored document (or a projection of it) with its int64 price as a number again. */
function withNumberCents<T extends { limit_price_cents: Long | number | null }>(
  document: T,
): Omit<T, "limit_price_cents"> & { limit_price_cents: number | null } {
  const cents = document.limit_price_cents;
  return { ...document, limit_price_cents: cents === null ? null : Number(cents) };
}

function fromDocument(document: OrderDocument): OrderRecord {
  return withNumberCents(document);
}
