/**
 * The sweeper keeps "every 201 is placed" true when the stream cannot: it finds orders still `accepted`
 * past their sweep time (the XADD at intake failed, an API pod died after the MongoDB write, Redis lost
 * the stream, or a transient failure's retry is due) and orders stuck in `placing` past their lease (the
 * holder died and its entry is gone), and puts them on the stream again. Each re-dispatch is won through
 * a conditional update first, so several sweepers never flood the stream; duplicates that still happen
 * are harmless because the actor's claim is conditional.
 */
import type { Clock, OrderRepository, PlacementDispatcher } from "../../src/domain/ports.ts";
import type { Logger } from "../../src/logger.ts";
import { type BackoffPolicy, backoffDelay } from "../runtime/backoff.ts";

export interface SweeperDeps {
  orders: OrderRepository;
  dispatcher: PlacementDispatcher;
  clock: Clock;
  logger: Logger;
  /** Delay before the next check of an order just re-dispatched; grows with its re-dispatch count. */
  redispatchBackoff: BackoffPolicy;
  batchSize?: number;
  onRedispatched?(reason: "due" | "stale_lease"): void;
}

export function createSweeper(deps: SweeperDeps) {
  const { orders, dispatcher, clock, logger } = deps;
  const batch = deps.batchSize ?? 500;

  async function sweepOnce(): Promise<number> {
    let count = 0;
    const now = clock.now();
    for (const order of await orders.findDueForDispatch(now, batch)) {
      const next = new Date(now.getTime() + backoffDelay(order.redispatches + 1, deps.redispatchBackoff));
      if (!(await orders.rescheduleSweep(order._id, order.sweep_at, next))) continue;
      try {
        await dispatcher.dispatch(order);
      } catch (error) {
        // Redis is down: keep the order due with its backoff unchanged, and end this pass (the next
        // order would fail the same way). Otherwise an outage would push every order's next check out.
        await orders.restoreSweep(order._id, next, order.sweep_at);
        throw error;
      }
      deps.onRedispatched?.("due");
      count += 1;
    }
    for (const order of await orders.findStalePlacing(now, batch)) {
      const next = new Date(now.getTime() + deps.redispatchBackoff.baseMs);
      if (!(await orders.expireLease(order._id, order.lease_token, now, next))) continue;
      await dispatcher.dispatch(order);
      logger.warn("order re-dispatched after its lease expired", { order_id: order._id });
      deps.onRedispatched?.("stale_lease");
      count += 1;
    }
    return count;
  }

  return { sweepOnce };
}
