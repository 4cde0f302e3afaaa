/**
 * The end-to-end monitor's question, "how old is the oldest order still waiting to be placed?", asked
 * without reading the whole backlog each time. A full look-up (every waiting order: on FerretDB a read of
 * the backlog) runs every `fullEveryMs` and whenever the walk below would be long; between them the
 * monitor walks the sweep buckets (see sweepBucketOf) up from the lowest one that may hold a waiting
 * order, one equality look-up each, and reports the oldest order of the first bucket holding one. Every
 * waiting order is due no later than DISPATCH_GRACE_MS after now, so the walk ends there; a walk that
 * meets `maxWalkBuckets` empty buckets in a row gives way to a full look-up.
 *
 * Between full look-ups the answer can be young by the age of an order whose due time was moved later
 * than its peers' (a replayed order, due at its replay): it is reported once its bucket is the lowest.
 * Parked orders are not waiting to be placed: they have their own gauge (placement_parked_orders).
 */

import type { OrderStatus } from "../../src/domain/order.ts";
import { SWEEP_BUCKET_MS, sweepBucketOf } from "../../src/domain/order.ts";
import type { Clock } from "../../src/domain/ports.ts";

export interface OldestWaitingStore {
  oldestUnfinished(statuses?: OrderStatus[]): Promise<{ status: OrderStatus; created_at: Date }[]>;
  earliestWaitingSweepAt(): Promise<Date | null>;
  oldestWaitingInBucket(bucket: number): Promise<Date | null>;
}

export interface OldestWaitingDeps {
  orders: OldestWaitingStore;
  clock: Clock;
  /** DISPATCH_GRACE_MS: a new order is due at most this long after it is stored. */
  graceMs: number;
  /** Default: 5 minutes. */
  fullEveryMs?: number;
  /** Empty buckets in a row after which a walk gives way to a full look-up. Default: 5 minutes of them. */
  maxWalkBuckets?: number;
}

/**
 * The walk never starts above the bucket of this long ago: an order marked due "now" by a process
 * whose clock is a little behind lands just below the current bucket.
 */
const CLOCK_MARGIN_MS = 30_000;

export function createOldestWaitingLookup(deps: OldestWaitingDeps) {
  const { orders, clock, graceMs } = deps;
  const fullEveryMs = deps.fullEveryMs ?? 300_000;
  const maxWalkBuckets = deps.maxWalkBuckets ?? 300_000 / SWEEP_BUCKET_MS;
  let lowestBucket: number | undefined;
  let lastFullAt = Number.NEGATIVE_INFINITY;

  return async function oldestUnfinished(): Promise<{ status: OrderStatus; created_at: Date }[]> {
    const nowMs = clock.now().getTime();
    const lastBucket = sweepBucketOf(new Date(nowMs + graceMs));
    const ceiling = sweepBucketOf(new Date(nowMs - CLOCK_MARGIN_MS));
    if (lowestBucket !== undefined && nowMs - lastFullAt < fullEveryMs) {
      // `placing` is a status of earlier versions only: its look-up finds nothing, from an index.
      const placing = await orders.oldestUnfinished(["placing"]);
      const walkEnd = Math.min(lastBucket, lowestBucket + maxWalkBuckets);
      for (let bucket = lowestBucket; bucket <= walkEnd; bucket++) {
        const createdAt = await orders.oldestWaitingInBucket(bucket);
        if (createdAt) {
          lowestBucket = Math.min(bucket, ceiling);
          return [{ status: "accepted", created_at: createdAt }, ...placing];
        }
      }
      if (walkEnd === lastBucket) {
        lowestBucket = ceiling;
        return placing;
      }
      // A long stretch of empty buckets (the oldest order of long ago was placed): ask where the rest are.
    }
    lastFullAt = nowMs;
    const [oldest, earliestDue] = await Promise.all([
      orders.oldestUnfinished(),
      orders.earliestWaitingSweepAt(),
    ]);
    lowestBucket = Math.min(earliestDue ? sweepBucketOf(earliestDue) : ceiling, ceiling);
    return oldest;
  };
}
