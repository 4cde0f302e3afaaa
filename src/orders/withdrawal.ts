/**
 * Withdrawal of an order whose client was answered 500 without an Idempotency-Key. The order may have
 * been stored (the insert's outcome is unknown, or it landed after the deadline), but the client was
 * told it failed and will not learn otherwise, so it must never be placed: a retry without a key would
 * place a second one. docs/adr/0002-placement-lease-and-fencing.md, "Withdrawal".
 *
 * Two steps, retried in the background until both land:
 * 1. Redis: the withdrawal fence on the order's placement state (no actor may lease it, no dispatch
 *    may add it; kept a day). Refused while an actor holds its lease (retried: the actor's outcome
 *    decides) and when it is already placed or rejected (then that is the order's fate, visible to the
 *    client under its X-Order-Id).
 * 2. MongoDB: `withdrawn`, by a conditional update, or by inserting the withdrawn order under its id when
 *    it is not there, so that an insert still on its way fails as a duplicate.
 * While Redis cannot be reached, step 2 alone is safe as long as the order is inside its dispatch grace
 * period: nothing dispatches an order before its sweep time, and after step 2 the sweeper never will.
 * If this process dies first, the sweeper finishes a fenced withdrawal when it meets the order.
 */
import type { OrderRecord, OrderStatus } from "../domain/order.ts";
import type {
  Clock,
  OrderEvent,
  OrderEventPublisher,
  OrderRepository,
  PlacementDispatcher,
} from "../domain/ports.ts";
import { type BackoffPolicy, backoffDelay } from "../support/backoff.ts";

/** What became of a withdrawal: the order's final status, or `not_stored` (no document, no tombstone). */
export type WithdrawalResult = Extract<OrderStatus, "withdrawn" | "placed" | "rejected"> | "not_stored";

export interface WithdrawalHooks {
  onFinished?(orderId: string, result: WithdrawalResult | OrderStatus): void;
  onRetry?(orderId: string, error: unknown): void;
  onPendingChanged?(pending: number): void;
}

export function createWithdrawals(deps: {
  orders: Pick<OrderRepository, "withdraw">;
  dispatcher: Pick<PlacementDispatcher, "fenceForWithdrawal">;
  clock: Clock;
  /** The accounts' event feeds (WebSocket /orders/events); none: no events. */
  events?: OrderEventPublisher;
  hooks?: WithdrawalHooks;
  backoff?: BackoffPolicy;
  /** Margin before the order's sweep time inside which MongoDB alone may withdraw it (clock skew). */
  graceMarginMs?: number;
}) {
  const { orders, dispatcher, clock, events, hooks = {} } = deps;
  const backoff = deps.backoff ?? { baseMs: 100, maxMs: 5_000 };
  const graceMarginMs = deps.graceMarginMs ?? 2_000;
  const pending = new Set<string>();
  let closed = false;

  /** One round: the status the order ends with, or "retry" when a step must be tried again. */
  async function attempt(order: OrderRecord): Promise<WithdrawalResult | OrderStatus | "retry"> {
    let fence: Awaited<ReturnType<PlacementDispatcher["fenceForWithdrawal"]>>;
    try {
      fence = await dispatcher.fenceForWithdrawal(order);
    } catch (error) {
      const insideGrace = clock.now().getTime() < order.sweep_at.getTime() - graceMarginMs;
      if (!insideGrace) throw error;
      fence = "fenced";
    }
    if (fence === "held") return "retry";
    if (fence === "placed" || fence === "rejected") return fence;
    return (await orders.withdraw(order._id, clock.now(), order)) ?? "not_stored";
  }

  async function run(order: OrderRecord): Promise<void> {
    for (let round = 1; !closed; round++) {
      try {
        const result = await attempt(order);
        if (result !== "retry") {
          if (result === "withdrawn") void events?.publish(withdrawnEvent(order, clock.now()));
          hooks.onFinished?.(order._id, result);
          return;
        }
      } catch (error) {
        hooks.onRetry?.(order._id, error);
      }
      await Bun.sleep(backoffDelay(round, backoff));
    }
  }

  /** Starts withdrawing `order` in the background (once per order id); settles when it is finished. */
  function withdraw(order: OrderRecord): Promise<void> {
    if (pending.has(order._id) || closed) return Promise.resolve();
    pending.add(order._id);
    hooks.onPendingChanged?.(pending.size);
    return run(order).finally(() => {
      pending.delete(order._id);
      hooks.onPendingChanged?.(pending.size);
    });
  }

  return {
    withdraw,
    /** Stops retrying (shutdown); a fenced order is finished by the sweeper. */
    close() {
      closed = true;
    },
    get pending() {
      return pending.size;
    },
  };
}

export type Withdrawals = ReturnType<typeof createWithdrawals>;

/**
 * `withdrawn` is what GET /orders/{id} shows from now on, whether the stored order was updated or its
 * tombstone inserted (the client holds its X-Order-Id either way).
 */
function withdrawnEvent(order: OrderRecord, at: Date): OrderEvent {
  return {
    order_id: order._id,
    account: order.account,
    status: "withdrawn",
    at,
    filled_quantity: 0,
    average_price_cents: null,
    rejection_reason: null,
  };
}
