/**
 * The placement actor's behaviour: one message = one order id. The claim in MongoDB is conditional, so
 * duplicated entries (at-least-once delivery, sweeper re-dispatch) cannot place an order twice here,
 * and the order id is the client order id at the venue, so a resubmission after an ambiguous attempt
 * is recognised there; an order already attempted is first looked up at the venue.
 *
 * Outcomes: placed (durable, then acknowledged); rejected (final, with a reason, plus a dead-letter
 * entry); retry (a transport failure: the order goes back to `accepted` with a backoff time and the
 * sweeper dispatches it when due); skipped (already final, held by a live lease, or not yet due).
 */
import { isRetryable } from "../../src/domain/errors.ts";
import type { OrderRecord } from "../../src/domain/order.ts";
import type { Clock, OrderRepository } from "../../src/domain/ports.ts";
import type { Exchange, ExchangeOrder } from "../../src/exchange/port.ts";
import type { Logger } from "../../src/logger.ts";
import { type BackoffPolicy, backoffDelay } from "../runtime/backoff.ts";
import type { ActorBehaviour, ActorMessage } from "../runtime/stream-actor.ts";
import type { ExchangeBreaker } from "./exchange-breaker.ts";

export type PlacementOutcome = "placed" | "retry" | "rejected" | "skipped";

export class PoisonMessageError extends Error {
  readonly code = "POISON_MESSAGE";
  constructor(reason: string) {
    super(reason);
    this.name = "PoisonMessageError";
  }
}

export interface PlacementDeps {
  orders: OrderRepository;
  exchange: Exchange;
  breaker: ExchangeBreaker;
  clock: Clock;
  logger: Logger;
  leaseMs: number;
  retry: BackoffPolicy;
  /** Appends to the dead-letter stream (rejected orders, unknown order ids). */
  deadLetter(fields: Record<string, string>): Promise<void>;
  random?: () => number;
  observe?(outcome: PlacementOutcome, attemptSeconds: number | null, duplicateAtVenue: boolean): void;
}

export function createPlacementBehaviour(
  deps: PlacementDeps,
): ActorBehaviour & { placeOne(orderId: string, signal: AbortSignal): Promise<PlacementOutcome> } {
  const { orders, exchange, breaker, clock, logger } = deps;

  async function placeOne(orderId: string, signal: AbortSignal): Promise<PlacementOutcome> {
    const token = crypto.randomUUID();
    const order = await orders.claim(orderId, clock.now(), deps.leaseMs, token);
    if (!order) return skipOrDeadLetter(orderId);
    const log = logger.child({ order_id: orderId, attempt: order.attempts });

    if (order.attempts > 1 || order.redispatches > 0) {
      // An earlier attempt may have reached the venue (a timeout, a crash): ask before resubmitting.
      // `redispatches` too: a server without atomic updates (FerretDB v1 writes whole documents back)
      // can let a sweeper's write undo an earlier claim, and that write always counts a re-dispatch.
      const known = await exchange
        .lookup(orderId, AbortSignal.any([signal, AbortSignal.timeout(deps.leaseMs / 2)]))
        .catch(() => null);
      if (known) {
        await orders.markPlaced(orderId, known.venue_order_id, clock.now());
        log.info("order placed (found at venue)", { venue_order_id: known.venue_order_id });
        deps.observe?.("placed", null, false);
        return "placed";
      }
    }

    // Fencing: a process paused past its lease (SIGSTOP, a stalled VM) resumes here while another actor
    // may hold the order; a submission now would be stopped only by the venue's client-order-id check.
    // Released instead: a no-op when another actor holds the order (the token differs), otherwise it
    // is retried like a failed attempt. No safety margin: claim + look-up + venue call would all have
    // to fit in it, and with slow look-ups (bounded by half the lease) orders could starve.
    const leaseLeftMs = order.lease_until ? order.lease_until.getTime() - clock.now().getTime() : Infinity;
    if (leaseLeftMs <= 0) {
      const retryAt = new Date(clock.now().getTime() + backoffDelay(order.attempts, deps.retry, deps.random));
      await orders.release(orderId, token, retryAt, "lease ran out before the submission", clock.now());
      log.warn("lease ran out before the submission; released", { lease_left_ms: leaseLeftMs });
      deps.observe?.("retry", null, false);
      return "retry";
    }

    // Outside the try: a malformed order is a poison message (left pending, dead-lettered after
    // MAX_DELIVERIES), not a transport failure to retry forever.
    const request = toExchangeOrder(order);
    const started = performance.now();
    try {
      const ack = await breaker.place(request, signal);
      const seconds = (performance.now() - started) / 1000;
      await orders.markPlaced(orderId, ack.venue_order_id, clock.now());
      log.info("order placed", { venue_order_id: ack.venue_order_id, duplicate_at_venue: ack.duplicate });
      deps.observe?.("placed", seconds, ack.duplicate);
      return "placed";
    } catch (error) {
      const seconds = (performance.now() - started) / 1000;
      if (!isRetryable(error)) {
        const reason = (error as Error).message;
        await orders.markRejected(orderId, reason, clock.now());
        await deps.deadLetter({ order_id: orderId, reason, kind: "rejected" });
        log.warn("order rejected", { reason });
        deps.observe?.("rejected", seconds, false);
        return "rejected";
      }
      const retryAt = new Date(clock.now().getTime() + backoffDelay(order.attempts, deps.retry, deps.random));
      await orders.release(orderId, token, retryAt, (error as Error).message, clock.now());
      log.info("placement attempt failed; will retry", { error, retry_at: retryAt.toISOString() });
      deps.observe?.("retry", seconds, false);
      return "retry";
    }
  }

  async function skipOrDeadLetter(orderId: string): Promise<PlacementOutcome> {
    const current = await orders.findById(orderId);
    if (!current) {
      await deps.deadLetter({
        order_id: orderId,
        reason: "order not found in MongoDB",
        kind: "unknown_order",
      });
      logger.error("stream entry names an unknown order", { order_id: orderId });
      deps.observe?.("rejected", null, false);
      return "rejected";
    }
    deps.observe?.("skipped", null, false);
    return "skipped";
  }

  // Handlers taken while the breaker was not closed and not finished yet. The breaker only learns of a
  // half-open trial when the handler reaches it (after the MongoDB claim), so the gate counts these too:
  // otherwise the read loop keeps taking entries during that claim and burns their attempts.
  let admittedWhileNotClosed = 0;
  // Orders this process is working on. A second entry for the same order (a sweeper re-dispatch next to
  // the original in one read) is acknowledged at once: the first handler finishes or releases the order.
  // The claim in MongoDB is conditional anyway, but a server whose findAndModify is not atomic under
  // concurrency (FerretDB v1) would let both claims through and submit the order twice.
  const ordersInProgress = new Set<string>();

  return {
    placeOne,
    async handle(message: ActorMessage, signal: AbortSignal) {
      const orderId = message.fields.order_id;
      if (!orderId) throw new PoisonMessageError(`entry ${message.id} has no order_id`);
      if (ordersInProgress.has(orderId)) {
        deps.observe?.("skipped", null, false);
        return;
      }
      const counted = breaker.state !== "closed";
      if (counted) admittedWhileNotClosed += 1;
      ordersInProgress.add(orderId);
      try {
        await placeOne(orderId, signal);
      } catch (error) {
        // Only a poison message (and a shutdown) leaves the entry pending. A MongoDB or Redis failure is
        // transient: redelivering the entry until it counts as poison would park an order that must be
        // placed. The order document is its own outbox, so the entry is acknowledged and the sweeper
        // re-drives the order (an `accepted` one when due, a `placing` one when its lease expires).
        if (error instanceof PoisonMessageError || signal.aborted) throw error;
        logger.warn("placement failed on MongoDB or Redis; the sweeper re-drives the order", {
          order_id: orderId,
          error,
        });
      } finally {
        ordersInProgress.delete(orderId);
        if (counted) admittedWhileNotClosed -= 1;
      }
    },
    gate: () => {
      const capacity = breaker.capacity();
      return capacity === Number.POSITIVE_INFINITY
        ? capacity
        : Math.max(0, capacity - admittedWhileNotClosed);
    },
    async onDeadLettered(entry, reason) {
      const orderId = entry.fields?.order_id;
      if (orderId) await orders.park(orderId, `dead-lettered: ${reason}`, clock.now());
    },
  };
}

export function toExchangeOrder(order: OrderRecord): ExchangeOrder {
  if (typeof order.instrument !== "string" || typeof order.quantity !== "number") {
    throw new PoisonMessageError(`order ${order._id} is malformed`);
  }
  return {
    client_order_id: order._id,
    type: order.type,
    side: order.side,
    instrument: order.instrument,
    limit_price_cents: order.limit_price_cents,
    quantity: order.quantity,
  };
}
