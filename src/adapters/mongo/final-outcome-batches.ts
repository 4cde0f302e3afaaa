/**
 * Final outcomes group-committed: the conditional updates that record orders' outcomes, gathered from a
 * process's concurrent callers into unordered bulkWrites. On the embedded store (FerretDB on
 * PostgreSQL) 32 updates per bulkWrite, 4 at a time, cost 0.90 ms of CPU per update (client, FerretDB
 * and PostgreSQL) against 1.35 ms one updateOne at a time, and answered more per second (`bun run
 * bench:ferretdb-batches`); FerretDB runs a bulk's updates one after another, so larger batches mostly
 * add latency.
 *
 * MongoDB answers only how many of a bulk's updates matched. All of them: each caller's update matched.
 * Fewer: which ones is not said, and each caller learns "unknown" and reads its order back (the update
 * carries a write id of its own for that: MongoOrderRepository.finish).
 */
import { type Collection, type Document, type Filter, MongoBulkWriteError, type UpdateFilter } from "mongodb";
import { hasWriteConcernError, type InFlightGate, retriedOnce, writeErrorsByIndex } from "./client.ts";
import { createGroupCommit } from "./group-commit.ts";

/** One order's conditional update; `filter` names the order by `_id`. */
export interface ConditionalUpdate<T extends Document> {
  filter: Filter<T>;
  update: UpdateFilter<T>;
}

export type UpdateAnswer = "matched" | "unknown";

const MAX_BATCH = 32;
const CONCURRENT_BATCHES = 4;
/** How long updates gather while bulkWrites are in flight; with none in flight, a turn's go at once. */
const WINDOW_MS = 2;

export function createFinalOutcomeBatches<T extends Document>(options: {
  collection: Collection<T>;
  gate: InFlightGate;
  /** The write concern and deadline of one bulkWrite, made when it is sent. */
  durable(): Document;
  /** Documents the store updated durably. */
  onWritten(documents: number): void;
}) {
  const { collection, gate } = options;

  /**
   * One unordered bulkWrite. A write error fails only its own update; a write-concern or network error
   * leaves every update of the batch ambiguous, and each caller gets the error (recording an outcome
   * again is idempotent).
   */
  async function writeBatch(updates: ConditionalUpdate<T>[]): Promise<(Error | UpdateAnswer)[]> {
    try {
      // Retried once where the driver would have retried a single update (a failover): each update is
      // conditional and carries its write id, so one that the first try applied reads back as applied.
      const result = await retriedOnce(() =>
        gate.run(() =>
          collection.bulkWrite(
            // updateMany, though `_id` matches one order at most: FerretDB v1.24 keeps an updateOne's
            // look-up (a PostgreSQL connection) open until the whole command ends, so a bulk of 32 held
            // 33 connections and bench:system's store wedged in its pool within seconds; a multi-update
            // reads its look-up to the end and lets go of it. On MongoDB a multi-update is not a
            // retryable write, so the driver would not retry the batch after a failover; retriedOnce does.
            updates.map(({ filter, update }) => ({ updateMany: { filter, update } })),
            { ordered: false, ...options.durable() },
          ),
        ),
      );
      options.onWritten(result.matchedCount);
      return updates.map(() => (result.matchedCount === updates.length ? "matched" : "unknown"));
    } catch (error) {
      if (!(error instanceof MongoBulkWriteError) || hasWriteConcernError(error))
        return updates.map(() => error as Error);
      const failed = writeErrorsByIndex(error);
      options.onWritten(error.result.matchedCount);
      return updates.map((_, i) => failed.get(i) ?? "unknown");
    }
  }

  const batches = createGroupCommit<ConditionalUpdate<T>, UpdateAnswer>({
    windowMs: WINDOW_MS,
    maxBatch: MAX_BATCH,
    maxConcurrentFlushes: CONCURRENT_BATCHES,
    // An idle actor records at the store's latency; a busy one batches while outcomes are in flight.
    flushWhenIdle: true,
    flush: writeBatch,
  });
  return { submit: (update: ConditionalUpdate<T>) => batches.submit(update) };
}
