/**
 * The sweeper keeps "every 201 is placed" true when Redis cannot: it finds orders still `accepted` past
 * their sweep time (the XADD at intake failed, an API pod died after the MongoDB write, Redis lost the
 * stream, a lease expired with its holder) and dispatches them again. The dispatch adds an entry only
 * when Redis does not track the order (queued, leased, waiting for a retry, or done), so an order still
 * on the stream or in the retry schedule is left alone, and two sweeps of one order add one entry. Its
 * one MongoDB write: an order fenced for withdrawal in Redis whose API died before withdrawing it in
 * MongoDB is withdrawn here.
 *
 * Bounded and spread: each pass reads at most `batchSize` orders per partition, continuing from where
 * the last pass stopped (a cursor, so a long backlog does not hide the orders behind it); a partition is
 * swept by one actor process at a time (a short lock in Redis); nothing is swept while the breaker is
 * not closed (the orders would only wait on the stream).
 *
 * Index-backed on every store: most passes look only in the recent sweep buckets (the due times of the
 * last `recentBuckets` x SWEEP_BUCKET_MS, one equality look-up each), which FerretDB passes down to
 * PostgreSQL; a waiting order not yet due is never read. A full pass (every unfinished order due, by a
 * range on `sweep_at`: on FerretDB a read of the partition's whole backlog) runs every `fullPassEveryMs`,
 * and at once when the recent buckets do not reach back to the previous pass (the first pass, a lock
 * taken over, a pause while the breaker was open): it finds what the buckets cannot (orders stored before
 * the buckets existed, a due time written by a clock far behind). Full passes follow each other while
 * they still re-dispatch a backlog (Redis lost its streams) and the page was full.
 */
import { SWEEP_BUCKET_MS, sweepBucketOf } from "../../src/domain/order.ts";
import type {
  Clock,
  DispatchCandidate,
  OrderRepository,
  PlacementDispatcher,
} from "../../src/domain/ports.ts";
import type { Logger } from "../../src/logger.ts";

export interface SweeperDeps {
  orders: Pick<OrderRepository, "findDueForDispatch" | "findDueInBucket" | "withdraw">;
  dispatcher: PlacementDispatcher;
  clock: Clock;
  logger: Logger;
  partitions: number;
  /** Takes or renews this process's sweep lock of a partition; true when it holds it. */
  holdLock(partition: number): Promise<boolean>;
  /** False while the venue is unavailable (breaker open or half-open): skip the pass. */
  canPlace?(): boolean;
  batchSize?: number;
  /** Sweep buckets a pass between full passes looks in, the current one included. Default: 10 (10 s). */
  recentBuckets?: number;
  /** How often a full pass runs at the latest. Default: 30 s. */
  fullPassEveryMs?: number;
  onPass?(kind: "full" | "recent"): void;
  onRedispatched?(reason: "due"): void;
  onWithdrawn?(orderId: string): void;
}

/** What the sweeper remembers of a partition between passes. */
interface PartitionSweep {
  lastPassAt?: number;
  lastFullPassAt?: number;
  /** The full pass stopped on a full page: the next one continues from here. */
  fullCursor?: Date;
  /** The last full pass re-dispatched orders (a backlog Redis lost): the next follows at once. */
  fullPassDispatched?: boolean;
  /** The recent pass stopped on a full page in this bucket, at this due time. */
  recentCursor?: { bucket: number; after: Date };
}

export function createSweeper(deps: SweeperDeps) {
  const { orders, dispatcher, clock, logger } = deps;
  const batch = deps.batchSize ?? 500;
  const recentBuckets = deps.recentBuckets ?? 10;
  const fullPassEveryMs = deps.fullPassEveryMs ?? 30_000;
  const partitions = new Map<number, PartitionSweep>();

  function needsFullPass(sweep: PartitionSweep, nowMs: number, firstRecentBucket: number): boolean {
    if (sweep.lastPassAt === undefined || sweep.lastFullPassAt === undefined) return true;
    // The recent buckets start after the last pass: an order due in between would be missed.
    if (sweep.lastPassAt < firstRecentBucket * SWEEP_BUCKET_MS) return true;
    if (sweep.fullCursor !== undefined && sweep.fullPassDispatched) return true;
    return nowMs - sweep.lastFullPassAt >= fullPassEveryMs;
  }

  async function sweepPartition(partition: number, now: Date): Promise<number> {
    const sweep = partitions.get(partition) ?? {};
    partitions.set(partition, sweep);
    const nowMs = now.getTime();
    const currentBucket = sweepBucketOf(now);
    const firstRecentBucket = currentBucket - recentBuckets + 1;
    const full = needsFullPass(sweep, nowMs, firstRecentBucket);
    sweep.lastPassAt = nowMs;
    deps.onPass?.(full ? "full" : "recent");
    if (full) {
      sweep.lastFullPassAt = nowMs;
      const due = await orders.findDueForDispatch(now, batch, { partition, after: sweep.fullCursor });
      // A short page means the end was reached: start from the oldest again next time.
      sweep.fullCursor = due.length < batch ? undefined : due[due.length - 1]!.sweep_at;
      const dispatched = await redispatchAll(due);
      sweep.fullPassDispatched = dispatched > 0;
      return dispatched;
    }
    const due: DispatchCandidate[] = [];
    const cursor = sweep.recentCursor;
    let bucket = cursor && cursor.bucket >= firstRecentBucket ? cursor.bucket : firstRecentBucket;
    let after = cursor && cursor.bucket === bucket ? cursor.after : undefined;
    for (; bucket <= currentBucket && due.length < batch; bucket++, after = undefined) {
      due.push(...(await orders.findDueInBucket(bucket, now, batch - due.length, { partition, after })));
    }
    const last = due.at(-1);
    sweep.recentCursor =
      due.length < batch || !last
        ? undefined
        : { bucket: sweepBucketOf(last.sweep_at), after: last.sweep_at };
    return redispatchAll(due);
  }

  async function redispatchAll(due: DispatchCandidate[]): Promise<number> {
    let dispatched = 0;
    let failedInARow = 0;
    for (const order of due) {
      try {
        if (await redispatch(order)) dispatched += 1;
        failedInARow = 0;
      } catch (error) {
        // A bad order is skipped; several failures in a row mean Redis is down: end the pass.
        logger.warn("re-dispatch failed", { order_id: order._id, error });
        if (++failedInARow >= 3) throw error;
      }
    }
    return dispatched;
  }

  async function redispatch(order: DispatchCandidate): Promise<boolean> {
    const result = await dispatcher.dispatch(order, "sweep");
    if (result === "withdrawn") {
      if ((await orders.withdraw(order._id, clock.now())) === "withdrawn") deps.onWithdrawn?.(order._id);
      return false;
    }
    if (result !== "added") return false;
    deps.onRedispatched?.("due");
    logger.info("order re-dispatched by the sweeper", { order_id: order._id });
    return true;
  }

  async function sweepOnce(): Promise<number> {
    if (deps.canPlace && !deps.canPlace()) return 0;
    const now = clock.now();
    let count = 0;
    for (let partition = 0; partition < deps.partitions; partition++) {
      if (!(await deps.holdLock(partition))) continue;
      try {
        count += await sweepPartition(partition, now);
      } catch (error) {
        // One bad partition (or order) must not stop the others.
        logger.warn("sweep of a partition failed", { partition, error });
      }
    }
    return count;
  }

  return { sweepOnce };
}
