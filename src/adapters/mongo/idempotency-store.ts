/**
 * Idempotency keys (collection `idempotency_keys`). Expiry: MongoDB's TTL index where the server has
 * one, else `purgeExpired` run periodically (FerretDB v1.24).
 */
import { type Collection, type Db, MongoServerError } from "mongodb";
import type { IdempotencyRecord, IdempotencyStore } from "../../domain/ports.ts";
import { DUPLICATE_KEY, durableWrite, ensureIndexes, operationDeadline } from "./client.ts";

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
    private readonly db: Db,
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
      await ensureIndexes(this.db, this.collection, [
        { key: { expires_at: 1 }, name: "expires_at_ttl", expireAfterSeconds: 0 },
      ]);
      this.serverExpires = true;
    } catch (error) {
      if (!(error instanceof MongoServerError) || error.codeName !== "NotImplemented") throw error;
      await ensureIndexes(this.db, this.collection, [{ key: { expires_at: 1 }, name: "expires_at" }]);
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
