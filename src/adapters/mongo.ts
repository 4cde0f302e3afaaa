/**
 * MongoDB adapters. Every write that a 201 or a state change relies on uses write concern
 * {w: "majority", j: true} with a timeout. The same code runs on MongoDB and on FerretDB v1.24
 * (no TTL or partial indexes, no Decimal128, write concerns accepted but ignored): prices are int64
 * cents, every document of a unique index has the key, and expiry falls back to a periodic clean-up.
 */
import {
  type Collection,
  type Db,
  type Document,
  type IndexDescription,
  Long,
  MongoClient,
  MongoServerError,
  type WriteConcernSettings,
} from "mongodb";
import type { OrderRecord } from "../domain/order.ts";
import {
  DuplicateOrderIdError,
  type IdempotencyRecord,
  type IdempotencyStore,
  type OrderRepository,
} from "../domain/ports.ts";

export function createMongoClient(url: string, timeoutMs: number): MongoClient {
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    socketTimeoutMS: timeoutMs * 2,
    waitQueueTimeoutMS: timeoutMs,
    heartbeatFrequencyMS: 2_000,
    maxPoolSize: 100,
    appName: "orders-service",
  });
  restartStuckMonitors(client, timeoutMs * 2 + 5_000);
  return client;
}

type MonitorHandle = { close(): void; connect(): void };

/**
 * Under Bun 1.4 with driver 7.9, a server heartbeat can hang for good when the server dies during the
 * monitor's reconnect handshake (the driver awaits a socket 'drain' that never comes, and no timeout
 * covers it). The server then stays Unknown and every operation fails server selection long after the
 * server is back (seen with MongoDB-wire server restarts under load; Node with the same driver recovers).
 * A heartbeat that has neither succeeded nor failed after `stuckAfterMs` (past its own connect and
 * socket timeouts) gets its monitor restarted. Uses the driver's internal topology: if a driver
 * upgrade moves it, this does nothing.
 */
function restartStuckMonitors(client: MongoClient, stuckAfterMs: number): void {
  const started = new Map<string, number>();
  client.on("serverHeartbeatStarted", (event) => {
    if (!started.has(event.connectionId)) started.set(event.connectionId, Date.now());
  });
  const done = (event: { connectionId: string }) => started.delete(event.connectionId);
  client.on("serverHeartbeatSucceeded", done);
  client.on("serverHeartbeatFailed", done);
  const timer = setInterval(
    () => {
      for (const [address, since] of started) {
        if (Date.now() - since < stuckAfterMs) continue;
        started.delete(address);
        const servers = (client as unknown as { topology?: { s?: { servers?: Map<string, unknown> } } })
          .topology?.s?.servers;
        const monitor = (servers?.get(address) as { monitor?: MonitorHandle } | undefined)?.monitor;
        if (typeof monitor?.close !== "function" || typeof monitor.connect !== "function") continue;
        monitor.close();
        monitor.connect();
      }
    },
    Math.max(500, Math.floor(stuckAfterMs / 4)),
  );
  timer.unref();
  client.on("topologyClosed", () => clearInterval(timer));
}

const DUPLICATE_KEY = 11000;

/**
 * An abort deadline for one operation: server selection, a write-concern wait and a round trip
 * (selection timeout + socket timeout). The driver's own timeouts do not cover a write that Bun 1.4
 * buffers on a connection the server reset: its socket then emits neither 'drain' nor 'error', and
 * driver 7 ignores `timeoutMS`, so without a signal such an operation waits forever (seen: kill -9 of
 * the server between two writes of one client). The driver honours `signal` on every operation and
 * closes the connection it aborts.
 */
export function operationDeadline(timeoutMs: number): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(timeoutMs * 3) };
}

/** Options for a write that a 201 or a state change relies on; fresh for each operation. */
export function durableWrite(timeoutMs: number): { writeConcern: WriteConcernSettings; signal: AbortSignal } {
  return {
    writeConcern: { w: "majority", journal: true, wtimeoutMS: timeoutMs },
    ...operationDeadline(timeoutMs),
  };
}

type OrderDocument = Omit<OrderRecord, "limit_price_cents"> & { limit_price_cents: Long | number | null };

export class MongoOrderRepository implements OrderRepository {
  readonly collection: Collection<OrderDocument>;

  constructor(
    db: Db,
    private readonly timeoutMs: number,
    collectionName = "orders",
  ) {
    this.collection = db.collection<OrderDocument>(collectionName);
  }

  private durable() {
    return durableWrite(this.timeoutMs);
  }

  private deadline() {
    return operationDeadline(this.timeoutMs);
  }

  /** Idempotent: safe on every start of every process. */
  async ensureIndexes(): Promise<void> {
    await ensureIndexes(this.collection, [
      { key: { status: 1, sweep_at: 1 }, name: "status_sweep_at" },
      { key: { status: 1, lease_until: 1 }, name: "status_lease_until" },
    ]);
  }

  async insert(order: OrderRecord): Promise<void> {
    const document: OrderDocument = {
      ...order,
      limit_price_cents: order.limit_price_cents === null ? null : Long.fromNumber(order.limit_price_cents),
    };
    try {
      await this.collection.insertOne(document, this.durable());
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY)
        throw new DuplicateOrderIdError(order._id);
      throw error;
    }
  }

  async findById(id: string, options: { majority?: boolean } = {}): Promise<OrderRecord | null> {
    const document = await this.collection.findOne(
      { _id: id },
      options.majority ? { readConcern: { level: "majority" }, ...this.deadline() } : this.deadline(),
    );
    return document ? fromDocument(document) : null;
  }

  async markDispatchFailed(id: string, now: Date): Promise<void> {
    await this.collection.updateOne(
      { _id: id, status: "accepted" },
      { $set: { dispatch_failed_at: now, sweep_at: now } },
    );
  }

  async claim(id: string, now: Date, leaseMs: number, token: string): Promise<OrderRecord | null> {
    const document = await this.collection.findOneAndUpdate(
      {
        _id: id,
        $or: [
          { status: "accepted", next_attempt_at: { $lte: now } },
          { status: "placing", lease_until: { $lte: now } },
        ],
      },
      {
        $set: {
          status: "placing",
          lease_until: new Date(now.getTime() + leaseMs),
          lease_token: token,
          updated_at: now,
        },
        $inc: { attempts: 1 },
      },
      { returnDocument: "after", ...this.durable() },
    );
    return document ? fromDocument(document) : null;
  }

  async markPlaced(id: string, venueOrderId: string, now: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: id, status: { $in: ["accepted", "placing"] } },
      {
        $set: {
          status: "placed",
          placed_at: now,
          venue_order_id: venueOrderId,
          updated_at: now,
          lease_until: null,
          lease_token: null,
        },
      },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async markRejected(id: string, reason: string, now: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: id, status: { $in: ["accepted", "placing"] } },
      {
        $set: {
          status: "rejected",
          rejection_reason: reason,
          updated_at: now,
          lease_until: null,
          lease_token: null,
        },
      },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async release(id: string, token: string, retryAt: Date, lastError: string, now: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: id, status: "placing", lease_token: token },
      {
        $set: {
          status: "accepted",
          next_attempt_at: retryAt,
          sweep_at: retryAt,
          lease_until: null,
          lease_token: null,
          last_error: lastError,
          updated_at: now,
        },
      },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async findDueForDispatch(now: Date, limit: number) {
    return this.collection
      .find(
        { status: "accepted", sweep_at: { $lte: now }, parked_at: null },
        { projection: { _id: 1, partition: 1, sweep_at: 1, redispatches: 1 }, ...this.deadline() },
      )
      .sort({ sweep_at: 1 })
      .limit(limit)
      .toArray();
  }

  async rescheduleSweep(id: string, expectedSweepAt: Date, nextSweepAt: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: id, status: "accepted", sweep_at: expectedSweepAt },
      { $set: { sweep_at: nextSweepAt }, $inc: { redispatches: 1 } },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async restoreSweep(id: string, expectedSweepAt: Date, originalSweepAt: Date): Promise<void> {
    await this.collection.updateOne(
      { _id: id, status: "accepted", sweep_at: expectedSweepAt },
      { $set: { sweep_at: originalSweepAt }, $inc: { redispatches: -1 } },
      this.durable(),
    );
  }

  async findStalePlacing(now: Date, limit: number) {
    return this.collection
      .find(
        { status: "placing", lease_until: { $lte: now }, parked_at: null },
        { projection: { _id: 1, partition: 1, lease_token: 1 }, ...this.deadline() },
      )
      .limit(limit)
      .toArray();
  }

  async expireLease(id: string, token: string | null, now: Date, nextSweepAt: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: id, status: "placing", lease_token: token, lease_until: { $lte: now } },
      {
        $set: {
          status: "accepted",
          next_attempt_at: now,
          sweep_at: nextSweepAt,
          lease_until: null,
          lease_token: null,
          updated_at: now,
        },
        $inc: { redispatches: 1 },
      },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async park(id: string, reason: string, now: Date): Promise<void> {
    await this.collection.updateOne(
      { _id: id },
      { $set: { parked_at: now, last_error: reason, updated_at: now } },
      this.durable(),
    );
  }

  async unpark(id: string, now: Date): Promise<OrderRecord | null> {
    await this.collection.updateOne(
      { _id: id, status: "placing" },
      {
        $set: {
          status: "accepted",
          lease_until: null,
          lease_token: null,
          next_attempt_at: now,
          updated_at: now,
        },
      },
      this.durable(),
    );
    const document = await this.collection.findOneAndUpdate(
      { _id: id },
      { $set: { parked_at: null, sweep_at: now, updated_at: now } },
      { returnDocument: "after", ...this.durable() },
    );
    return document ? fromDocument(document) : null;
  }
}

/**
 * Creates the indexes that are missing, one call each. Idempotent on every start of every process.
 * (FerretDB v1.24 drops the connection when one createIndexes call re-creates several existing indexes.)
 * No operation deadline here: building an index on a large collection may rightly take minutes, and a
 * process that never gets past start-up is never ready, so it takes no traffic.
 */
async function ensureIndexes<T extends Document>(
  collection: Collection<T>,
  specs: IndexDescription[],
): Promise<void> {
  const existing = new Set(
    (
      await collection
        .listIndexes()
        .toArray()
        .catch(() => [] as { name?: string }[])
    ).map((index) => index.name),
  );
  for (const { key, ...options } of specs) {
    if (!existing.has(options.name)) await collection.createIndex(key, options);
  }
}

function fromDocument(document: OrderDocument): OrderRecord {
  const cents = document.limit_price_cents;
  return { ...document, limit_price_cents: cents === null ? null : Number(cents) };
}

interface IdempotencyDocument {
  _id: string;
  request_hash: string;
  order_id: string;
  claimed_at: Date;
  expires_at: Date;
}

/**
 * Idempotency keys. The unique `_id` makes the claim race-safe; the order id fixed at the first claim is
 * the only id any request with that key may ever insert, so even a takeover cannot create a second order.
 */
export class MongoIdempotencyStore implements IdempotencyStore {
  readonly collection: Collection<IdempotencyDocument>;
  /** True when the server expires keys itself (MongoDB's TTL index); otherwise `purgeExpired` must run. */
  serverExpires = false;

  constructor(
    db: Db,
    private readonly timeoutMs: number,
    collectionName = "idempotency_keys",
  ) {
    this.collection = db.collection<IdempotencyDocument>(collectionName);
  }

  private durable() {
    return durableWrite(this.timeoutMs);
  }

  private deadline() {
    return operationDeadline(this.timeoutMs);
  }

  async ensureIndexes(): Promise<void> {
    try {
      await ensureIndexes(this.collection, [
        { key: { expires_at: 1 }, name: "expires_at_ttl", expireAfterSeconds: 0 },
      ]);
      this.serverExpires = true;
    } catch (error) {
      if (!(error instanceof MongoServerError) || error.codeName !== "NotImplemented") throw error;
      await ensureIndexes(this.collection, [{ key: { expires_at: 1 }, name: "expires_at" }]);
      this.serverExpires = false;
    }
  }

  async claim(record: IdempotencyRecord, expiresAt: Date) {
    try {
      await this.collection.insertOne(
        {
          _id: record.key,
          request_hash: record.requestHash,
          order_id: record.orderId,
          claimed_at: record.claimedAt,
          expires_at: expiresAt,
        },
        this.durable(),
      );
      return { claimed: true as const };
    } catch (error) {
      if (!(error instanceof MongoServerError) || error.code !== DUPLICATE_KEY) throw error;
      const existing = await this.collection.findOne({ _id: record.key }, this.deadline());
      return {
        claimed: false as const,
        existing: existing && {
          key: existing._id,
          requestHash: existing.request_hash,
          orderId: existing.order_id,
          claimedAt: existing.claimed_at,
        },
      };
    }
  }

  async takeOver(key: string, expectedClaimedAt: Date, now: Date): Promise<boolean> {
    const result = await this.collection.updateOne(
      { _id: key, claimed_at: expectedClaimedAt },
      { $set: { claimed_at: now } },
      this.durable(),
    );
    return result.modifiedCount === 1;
  }

  async release(key: string, claimedAt: Date): Promise<void> {
    await this.collection.updateOne(
      { _id: key, claimed_at: claimedAt },
      { $set: { claimed_at: new Date(0) } },
      this.durable(),
    );
  }

  /** The clean-up for servers without TTL indexes. */
  async purgeExpired(now: Date): Promise<number> {
    const result = await this.collection.deleteMany({ expires_at: { $lte: now } }, this.durable());
    return result.deletedCount;
  }
}
