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
 * the last pass stopped (a cursor over the sweep time, so a long backlog does not hide the orders behind
 * it); a partition is swept by one actor process at a time (a short lock in Redis); nothing is swept
 * while the breaker is not closed (the orders would only wait on the stream).
 */
import type {
  Clock,
  DispatchCandidate,
  OrderRepository,
  PlacementDispatcher,
} from "../../src/domain/ports.ts";
import type { Logger } from "../../src/logger.ts";

export interface SweeperDeps {
  orders: Pick<OrderRepository, "findDueForDispatch" | "withdraw">;
  dispatcher: PlacementDispatcher;
  clock: Clock;
  logger: Logger;
  partitions: number;
  /** Takes or renews this process's sweep lock of a partition; true when it holds it. */
  holdLock(partition: number): Promise<boolean>;
  /** False while the venue is unavailable (breaker open or half-open): skip the pass. */
  canPlace?(): boolean;
  batchSize?: number;
  onRedispatched?(reason: "due"): void;
  onWithdrawn?(orderId: string): void;
}

export function createSweeper(deps: SweeperDeps) {
  const { orders, dispatcher, clock, logger } = deps;
  const batch = deps.batchSize ?? 500;
  const cursors = new Map<number, Date>();

  async function sweepPartition(partition: number, now: Date): Promise<number> {
    const after = cursors.get(partition);
    const due = await orders.findDueForDispatch(now, batch, { partition, after });
    // A short page means the end was reached: start from the oldest again next time.
    if (due.length < batch) cursors.delete(partition);
    else cursors.set(partition, due[due.length - 1]!.sweep_at);
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
