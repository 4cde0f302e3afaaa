/**
 * The placement actor's behaviour: one message = one order. The order travels on its stream entry, so
 * the happy path reads nothing from MongoDB and writes once (the final outcome):
 *
 *   lease in Redis (SET with a token, expiring on the server's clock) -> venue call behind the breaker
 *   -> final outcome in MongoDB (conditional: the first outcome wins; idempotent on the venue's ack)
 *   -> `done` in Redis -> the runtime acknowledges the entry.
 *
 * Slots: `venueSlots` (ACTOR_CONCURRENCY) bounds the orders at the venue (a submission or a look-up in
 * flight). A few more orders than that are read and leased ahead (`prefetchFor`), so that a slot the
 * venue frees is taken at once by an order that is ready, not after a stream read and a lease; the
 * final write after the venue's answer holds only the runtime's slot. The venue's latency, not Redis's
 * or the store's, then sets how fast the venue slots turn over.
 *
 * Several entries for one order (at-least-once delivery, sweeper re-dispatch, a reclaimed entry) meet at
 * the lease: one works, the others are acknowledged. The order id is the client order id at the venue,
 * so a resubmission after an ambiguous attempt is recognised there; an entry that may not be the first
 * attempt (a retry, a reclaimed or re-dispatched entry) is first looked up at the venue.
 *
 * Outcomes: placed; rejected (final, with the venue's reason in MongoDB; not a dead letter: the
 * dead-letter stream holds poison entries and unknown order ids only); retry (a transport failure: the
 * order goes to the retry schedule in Redis and back to the stream when due, no MongoDB write); parked
 * (a transport failure on the last allowed attempt, `maxAttempts`, or past `maxAgeMs`: parked in MongoDB with its last
 * error until an operator replays it); deferred (the breaker refused before any venue call: back to the
 * retry schedule, and not counted as an attempt); skipped (already done, or leased by another actor).
 */
import { orderFromEntry } from "../../src/adapters/placement-state.ts";
import { isRetryable } from "../../src/domain/errors.ts";
import { createdAtOf } from "../../src/domain/ids.ts";
import { isPlacementFinal } from "../../src/domain/order.ts";
import type {
  Clock,
  DispatchedOrder,
  FinalWriteResult,
  OrderRepository,
  PlacementLeases,
} from "../../src/domain/ports.ts";
import type { Exchange, ExchangeOrder } from "../../src/exchange/port.ts";
import type { Logger } from "../../src/logger.ts";
import { type BackoffPolicy, backoffDelay } from "../../src/support/backoff.ts";
import type { ActorBehaviour, ActorMessage } from "../runtime/stream-actor.ts";
import { BreakerOpenError, type ExchangeBreaker } from "./exchange-breaker.ts";

export type PlacementOutcome = "placed" | "retry" | "deferred" | "rejected" | "parked" | "skipped";

export class PoisonMessageError extends Error {
  readonly code = "POISON_MESSAGE";
  constructor(reason: string) {
    super(reason);
    this.name = "PoisonMessageError";
  }
}

/**
 * Redis failed while the lease was being taken: nothing was done for the order yet. The entry stays
 * pending, and the reclaimer hands it on after CLAIM_TIMEOUT_MS. Acknowledged instead, the order would
 * wait for the sweeper, which takes over only once Redis forgets it (PLACEMENT_TRACK_TTL_MS, 15 min by
 * default): a Redis Cluster failover test showed exactly that (one order of 600 left `accepted`).
 */
export class LeaseUnavailableError extends Error {
  readonly code = "LEASE_UNAVAILABLE";
  constructor(orderId: string, cause: unknown) {
    super(`could not take the placement lease of order ${orderId}: ${(cause as Error)?.message ?? cause}`, {
      cause,
    });
    this.name = "LeaseUnavailableError";
  }
}

export interface PlacementDeps {
  orders: Pick<OrderRepository, "findById" | "markPlaced" | "markRejected" | "park">;
  leases: PlacementLeases;
  exchange: Exchange;
  breaker: ExchangeBreaker;
  clock: Clock;
  logger: Logger;
  leaseMs: number;
  /**
   * Fence against a paused process: a submission starts only this soon after the lease was taken, so
   * that the venue call (bounded by the breaker's timeout) ends before the lease does. Default: leaseMs.
   */
  submitWithinMs?: number;
  retry: BackoffPolicy;
  /**
   * Orders at the venue at once, at most (ACTOR_CONCURRENCY): from the start of the first venue call
   * (look-up or submission) to the venue's answer. Taking the lease before, and recording the outcome
   * after, hold none: neither Redis nor a store slow to take the final write may keep the venue's
   * capacity idle (the runtime's own concurrency bounds the orders recording). Default: unlimited.
   */
  venueSlots?: number;
  /**
   * Venue attempts an order may take: a transport failure on attempt `maxAttempts` parks the order
   * (with its last error) instead of scheduling another retry. Default: unlimited.
   */
  maxAttempts?: number;
  /**
   * Age (since intake, read from the UUIDv7 order id) past which a transient failure parks the order
   * instead of retrying: a market order placed hours late is not what the client asked for, so an
   * operator decides (`orders dlq replay`). Default: unlimited.
   */
  maxAgeMs?: number;
  /** Appends to the dead-letter stream (entries naming an unknown order id). */
  deadLetter(fields: Record<string, string>): Promise<void>;
  random?: () => number;
  observe?(outcome: PlacementOutcome, attemptSeconds: number | null, duplicateAtVenue: boolean): void;
  /** A final write found another outcome already there (or no order): counted and alerted on. */
  onFinalWriteMismatch?(orderId: string, result: FinalWriteResult): void;
  /** The outcome was written now (not found already there): the account's event feed hears of it. */
  onOutcomeWritten?(order: DispatchedOrder, status: "placed" | "rejected", reason: string | null): void;
}

/**
 * The runtime's handlers for a placement process with `venueSlots` venue slots: as many again record
 * outcomes, so that a store slow to take the final write stops the reading (backpressure) without
 * keeping a venue slot.
 */
export function placementHandlers(venueSlots: number): number {
  return 2 * venueSlots;
}

/**
 * Orders read and leased ahead of the venue slots: enough to cover a stream read and a lease (a few
 * milliseconds at hundreds of orders a second) so that no slot waits for them, few enough that their
 * leases are young when they reach the venue.
 */
export function prefetchFor(venueSlots: number): number {
  return Math.max(1, Math.ceil(venueSlots / 8));
}

/** What a handler does with its venue slot: wait for one before the first venue call, free it at the answer. */
interface VenueTurn {
  /** Resolves once this order holds a venue slot (at once when it holds one already). */
  enter(signal: AbortSignal): Promise<void>;
  /** The venue has answered (or will not be asked): the slot, and the order's place in the gate, are free. */
  leave(): void;
}

const freeTurn: VenueTurn = { enter: async () => {}, leave: () => {} };

export function createPlacementBehaviour(deps: PlacementDeps): ActorBehaviour & {
  placeOne(message: ActorMessage, signal: AbortSignal, turn?: VenueTurn): Promise<PlacementOutcome>;
  /** Orders at the venue now (at most `venueSlots`). */
  atVenue(): number;
} {
  const { orders, leases, exchange, breaker, clock, logger } = deps;
  const venueSlots = deps.venueSlots ?? Number.POSITIVE_INFINITY;
  const maxAttempts = deps.maxAttempts ?? Number.POSITIVE_INFINITY;
  const maxAgeMs = deps.maxAgeMs ?? Number.POSITIVE_INFINITY;

  /** Why a transient failure ends the order's retries now, or null to retry. */
  function giveUpReason(orderId: string, attempt: number, error: unknown): string | null {
    const message = (error as Error).message;
    if (attempt >= maxAttempts) return `gave up after ${attempt} attempts: ${message}`;
    const created = createdAtOf(orderId);
    const ageMs = created === null ? 0 : clock.now().getTime() - created.getTime();
    if (ageMs >= maxAgeMs)
      return `gave up after ${Math.round(ageMs / 1000)} s (${attempt} attempts): ${message}`;
    return null;
  }

  async function placeOne(
    message: ActorMessage,
    signal: AbortSignal,
    turn: VenueTurn = freeTurn,
  ): Promise<PlacementOutcome> {
    const fields = message.fields;
    const orderId = fields.order_id;
    if (!orderId) throw new PoisonMessageError(`entry ${message.id} has no order_id`);
    const partition = Number(fields.partition ?? 0) || 0;
    const token = crypto.randomUUID();
    const leasedAt = clock.now().getTime();
    const lease = await leases.acquire({ _id: orderId, partition }, token, deps.leaseMs).catch((error) => {
      throw new LeaseUnavailableError(orderId, error);
    });
    if (lease !== "acquired") {
      deps.observe?.("skipped", null, false);
      return "skipped";
    }
    try {
      return await work(message, signal, { orderId, partition, token, leasedAt }, turn);
    } catch (error) {
      // A poison message or a shutdown leaves the entry pending: give the lease back, so that the next
      // delivery (the reclaimer's, counted towards MAX_DELIVERIES) is not skipped as "held".
      if (error instanceof PoisonMessageError || signal.aborted)
        await leases.release({ _id: orderId, partition }, token).catch(() => {});
      throw error;
    }
  }

  async function work(
    message: ActorMessage,
    signal: AbortSignal,
    held: { orderId: string; partition: number; token: string; leasedAt: number },
    turn: VenueTurn,
  ): Promise<PlacementOutcome> {
    const fields = message.fields;
    const { orderId, partition, token, leasedAt } = held;
    const attempt = Math.max(1, Number(fields.attempt ?? 1) || 1);
    const log = logger.child({ order_id: orderId, attempt });

    const order = orderFromEntry(fields) ?? (await orderFromStore(orderId, partition));
    if (order === null) return "rejected";
    if (order === "final") {
      deps.observe?.("skipped", null, false);
      return "skipped";
    }

    // Before the look-up: the wait for a slot counts towards the lease's age (the fencing below).
    await turn.enter(signal);

    // Not surely the first submission: an earlier attempt may have reached the venue (a timeout, a
    // crash, a lost lease). Ask before resubmitting.
    if (attempt > 1 || fields.source !== "intake" || message.redelivered) {
      const known = await exchange
        .lookup(orderId, AbortSignal.any([signal, AbortSignal.timeout(lookupBudgetMs)]))
        .catch(() => null);
      if (known) {
        turn.leave();
        await recordPlaced(order, known.venue_order_id, attempt);
        log.info("order placed (found at venue)", { venue_order_id: known.venue_order_id });
        deps.observe?.("placed", null, false);
        return "placed";
      }
    }

    // Fencing: a process paused past its lease (SIGSTOP, a stalled VM) resumes here while another actor
    // may hold the order. Measured from before the lease was asked for, on this process's clock (the
    // lease itself expires on Redis's): the order goes back for a retry, unsubmitted.
    const sinceLeaseMs = clock.now().getTime() - leasedAt;
    if (sinceLeaseMs >= (deps.submitWithinMs ?? deps.leaseMs)) {
      const retryAt = new Date(clock.now().getTime() + backoffDelay(attempt, deps.retry, deps.random));
      await leases.scheduleRetry(order, token, retryAt, attempt);
      log.warn("lease too old to submit; handed back unsubmitted", { since_lease_ms: sinceLeaseMs });
      deps.observe?.("retry", null, false);
      return "retry";
    }

    // Outside the try: a malformed order is a poison message (left pending, dead-lettered after
    // MAX_DELIVERIES), not a transport failure to retry forever.
    const request = toExchangeOrder(order);
    const started = performance.now();
    try {
      const ack = await breaker.place(request, signal);
      turn.leave();
      const seconds = (performance.now() - started) / 1000;
      await recordPlaced(order, ack.venue_order_id, attempt);
      log.debug("order placed", { venue_order_id: ack.venue_order_id, duplicate_at_venue: ack.duplicate });
      deps.observe?.("placed", seconds, ack.duplicate);
      return "placed";
    } catch (error) {
      turn.leave();
      const seconds = (performance.now() - started) / 1000;
      if (signal.aborted) throw error; // shutdown mid-attempt: the lease goes back (above)
      if (!isRetryable(error)) {
        const reason = (error as Error).message;
        const written = await orders.markRejected(orderId, reason, clock.now(), attempt);
        checkFinalWrite(orderId, written);
        await leases.finish(order, "rejected");
        if (written === "applied") deps.onOutcomeWritten?.(order, "rejected", reason);
        log.warn("order rejected", { reason });
        deps.observe?.("rejected", seconds, false);
        return "rejected";
      }
      // The breaker refused before any venue call (it reopened, or another trial was out, between the
      // gate and this call): not an attempt, so neither counted towards maxAttempts nor timed.
      const calledVenue = !(error instanceof BreakerOpenError);
      const reason = giveUpReason(orderId, calledVenue ? attempt : attempt - 1, error);
      if (reason !== null) {
        await orders.park(orderId, reason, clock.now());
        await leases.finish(order, "parked");
        log.error("placement attempts or age exhausted; order parked", { error, attempts: attempt, reason });
        deps.observe?.("parked", seconds, false);
        return "parked";
      }
      // A venue that said when to come back (429/503 Retry-After) is not asked sooner; capped by the
      // retry policy's maximum.
      const retryAfterMs = Math.min((error as { retryAfterMs?: number }).retryAfterMs ?? 0, deps.retry.maxMs);
      const delayMs = Math.max(backoffDelay(attempt, deps.retry, deps.random), retryAfterMs);
      const retryAt = new Date(clock.now().getTime() + delayMs);
      await leases.scheduleRetry(order, token, retryAt, calledVenue ? attempt + 1 : attempt);
      if (!calledVenue) {
        log.info("the breaker refused before any venue call; will retry", {
          retry_at: retryAt.toISOString(),
        });
        deps.observe?.("deferred", null, false);
        return "deferred";
      }
      log.info("placement attempt failed; will retry", { error, retry_at: retryAt.toISOString() });
      deps.observe?.("retry", seconds, false);
      return "retry";
    }
  }

  async function recordPlaced(order: DispatchedOrder, venueOrderId: string, attempt: number): Promise<void> {
    const written = await orders.markPlaced(order._id, venueOrderId, clock.now(), attempt);
    checkFinalWrite(order._id, written);
    await leases.finish(order, "placed");
    if (written === "applied") deps.onOutcomeWritten?.(order, "placed", null);
  }

  function checkFinalWrite(orderId: string, result: FinalWriteResult): void {
    if (result === "applied" || result === "already") return;
    deps.onFinalWriteMismatch?.(orderId, result);
    logger.error("final write found another outcome", { order_id: orderId, result });
  }

  /** An entry with only an id (older writers): the order from MongoDB, "final" when done, null when unknown. */
  async function orderFromStore(
    orderId: string,
    partition: number,
  ): Promise<DispatchedOrder | "final" | null> {
    const stored = await orders.findById(orderId);
    if (!stored) {
      await deps.deadLetter({
        order_id: orderId,
        reason: "order not found in MongoDB",
        kind: "unknown_order",
      });
      await leases.finish({ _id: orderId, partition }, "unknown");
      logger.error("stream entry names an unknown order", { order_id: orderId });
      deps.observe?.("rejected", null, false);
      return null;
    }
    if (isPlacementFinal(stored.status)) {
      await leases.finish(stored, stored.status);
      return "final";
    }
    return stored;
  }

  // A look-up may use half the submission window, so that a slow one still leaves time to submit.
  const lookupBudgetMs = (deps.submitWithinMs ?? deps.leaseMs) / 2;

  // Handlers taken while the breaker was not closed and not finished yet. The breaker only learns of a
  // half-open trial when the handler reaches it (after the lease), so the gate counts these too:
  // otherwise the read loop keeps taking entries during that time and burns their attempts.
  let admittedWhileNotClosed = 0;
  // Handlers not yet past the venue's answer (leasing, waiting for a slot, or at the venue): the gate
  // keeps them within the slots plus the prefetch.
  let admitted = 0;
  let atVenue = 0;
  const waitingForSlot: (() => void)[] = [];
  const prefetch = prefetchFor(venueSlots);
  let gateOpened = () => {};

  function venueTurn(): VenueTurn {
    let state: "before" | "waiting" | "at venue" | "left" = "before";
    let abandon = () => {};
    return {
      async enter(signal) {
        if (state !== "before") return;
        if (atVenue < venueSlots) {
          atVenue += 1;
          state = "at venue";
          return;
        }
        signal.throwIfAborted();
        state = "waiting";
        // A freed slot passes straight to the first waiter (`leave` counts it for them).
        await new Promise<void>((resolve, reject) => {
          const take = () => {
            signal.removeEventListener("abort", abandon);
            state = "at venue";
            resolve();
          };
          abandon = () => {
            const queued = waitingForSlot.indexOf(take);
            if (queued >= 0) waitingForSlot.splice(queued, 1);
            state = "before";
            reject(signal.reason);
          };
          waitingForSlot.push(take);
          signal.addEventListener("abort", abandon, { once: true });
        });
      },
      leave() {
        if (state === "left") return;
        if (state === "at venue") {
          const next = waitingForSlot.shift();
          if (next) next();
          else atVenue -= 1;
        }
        state = "left";
        admitted -= 1;
        gateOpened();
      },
    };
  }

  return {
    placeOne,
    atVenue: () => atVenue,
    async handle(message: ActorMessage, signal: AbortSignal) {
      const counted = breaker.state !== "closed";
      if (counted) admittedWhileNotClosed += 1;
      admitted += 1;
      const turn = venueTurn();
      try {
        await placeOne(message, signal, turn);
      } catch (error) {
        // A poison message, a lease Redis could not give, and a shutdown leave the entry pending. Any
        // later MongoDB or Redis failure is transient: redelivering the entry until it counts as poison
        // would park an order that must be placed. The order document is its own outbox, so the entry
        // is acknowledged and the sweeper re-drives the order once its lease (short) has expired.
        if (error instanceof PoisonMessageError || error instanceof LeaseUnavailableError || signal.aborted)
          throw error;
        logger.warn("placement failed on MongoDB or Redis; the sweeper re-drives the order", {
          order_id: message.fields.order_id,
          error,
        });
      } finally {
        turn.leave();
        if (counted) admittedWhileNotClosed -= 1;
      }
    },
    gate: () => {
      const capacity = breaker.capacity();
      const breakerAllows =
        capacity === Number.POSITIVE_INFINITY ? capacity : capacity - admittedWhileNotClosed;
      return Math.max(0, Math.min(breakerAllows, venueSlots + prefetch - admitted));
    },
    onGateOpens(wake) {
      gateOpened = wake;
    },
    async onDeadLettered(entry, reason) {
      const orderId = entry.fields?.order_id;
      if (orderId) await orders.park(orderId, `dead-lettered: ${reason}`, clock.now());
    },
  };
}

export function toExchangeOrder(order: DispatchedOrder): ExchangeOrder {
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
