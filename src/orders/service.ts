/**
 * Order intake. A 201 means: the order is in MongoDB with write concern majority + journal, and its
 * placement is guaranteed (the document is its own outbox: the stream entry is a wake-up call, and the
 * sweeper re-dispatches any accepted order that no actor picked up).
 */
import { createHash } from "node:crypto";
import {
  IdempotencyKeyInFlightError,
  IdempotencyKeyReusedError,
  OrderNotFoundError,
} from "../domain/errors.ts";
import type { IdGenerator } from "../domain/ids.ts";
import { newOrderRecord, type OrderDraft, type OrderRecord } from "../domain/order.ts";
import {
  type Clock,
  DuplicateOrderIdError,
  type IdempotencyStore,
  type OrderEvent,
  type OrderEventPublisher,
  type OrderListPage,
  type OrderRepository,
  type PlacementDispatcher,
} from "../domain/ports.ts";
import { withDeadline } from "../support/deadline.ts";
import type { IntakeAdmission } from "./admission.ts";
import type { Withdrawals } from "./withdrawal.ts";

export interface OrderServiceSettings {
  partitions: number;
  dispatchGraceMs: number;
  idempotencyTtlMs: number;
  /** A key whose first request is older than this and produced no order is presumed abandoned. */
  idempotencyLeaseMs: number;
  /** POST /orders answers within this (the 500 body past it), whatever its operations still do. */
  requestDeadlineMs: number;
}

export interface OrderServiceHooks {
  onDispatchFailed?(orderId: string, error: unknown): void;
  onAmbiguousWrite?(orderId: string, error: unknown, stored: boolean): void;
}

/** Told the id an order is stored under, right before its insert (from then on the order may exist). */
export interface IntakeObserver {
  onOrderId?(orderId: string): void;
}

/** What one request's store step shares with its deadline: the order once built, and whether it was given up. */
interface IntakeAttempt extends IntakeObserver {
  order?: OrderRecord;
  /** The client was answered 500 without an Idempotency-Key: the order must not be dispatched. */
  abandoned: boolean;
}

export interface PlaceRequest {
  draft: OrderDraft;
  /** The client's Idempotency-Key header, or null. */
  idempotencyKey: string | null;
  /** The authenticated account the order belongs to. */
  account: string;
}

export interface PlaceResult {
  order: OrderRecord;
  replayed: boolean;
}

export function createOrderService(deps: {
  orders: OrderRepository;
  idempotency: IdempotencyStore;
  dispatcher: PlacementDispatcher;
  clock: Clock;
  ids: IdGenerator;
  settings: OrderServiceSettings;
  /** Where orders answered 500 without an Idempotency-Key go, so that nothing places them. */
  withdrawals: Pick<Withdrawals, "withdraw">;
  /** The accounts' event feeds (WebSocket /orders/events); none: no events. */
  events?: OrderEventPublisher;
  /** Load shedding (admission.ts): sees every store step of intake; none: every order goes to the store. */
  admission?: IntakeAdmission;
  hooks?: OrderServiceHooks;
}) {
  const { orders, idempotency, dispatcher, clock, ids, settings, withdrawals, events, hooks = {} } = deps;
  const { admission } = deps;
  /** A MongoDB step of intake: the admission sees how long it waits. */
  const atStore = <T>(step: () => Promise<T>): Promise<T> => (admission ? admission.track(step) : step());

  /**
   * POST /orders within its deadline. A failure (or the deadline) after the order id was in play means
   * "maybe stored": with an Idempotency-Key the client's retry resolves it (the stored order is
   * replayed); without one the order is withdrawn, so that the 500 never becomes a placement.
   */
  async function placeWithinDeadline(
    request: PlaceRequest,
    intake: IntakeObserver = {},
  ): Promise<PlaceResult> {
    const attempt: IntakeAttempt = { onOrderId: intake.onOrderId, abandoned: false };
    const work = place(request, attempt);
    try {
      const result = await withDeadline(work, settings.requestDeadlineMs);
      // Not awaited: the feed is a notification and never delays nor fails the 201 (publish never throws).
      if (!result.replayed && events) void events.publish(acceptedEvent(result.order));
      return result;
    } catch (error) {
      if (request.idempotencyKey === null) {
        attempt.abandoned = true;
        work.catch(() => {}); // its outcome no longer matters: the withdrawal decides
        if (attempt.order) void withdrawals.withdraw(attempt.order);
      }
      throw error;
    }
  }

  /**
   * Stores the order of `request.account`. Idempotency-Keys are the account's own: another account's
   * identical key is another key (one client can neither occupy nor read another's).
   */
  async function place(request: PlaceRequest, intake: IntakeAttempt): Promise<PlaceResult> {
    const { draft, idempotencyKey: clientKey, account } = request;
    if (clientKey === null) return { order: await store(ids(), request, intake), replayed: false };
    const idempotencyKey = scopedIdempotencyKey(account, clientKey);
    const requestHash = hashDraft(draft);
    const now = clock.now();
    const orderId = ids();
    const outcome = await atStore(() =>
      idempotency.claim(
        { key: idempotencyKey, requestHash, orderId, claimedAt: now },
        new Date(now.getTime() + settings.idempotencyTtlMs),
      ),
    );
    if (outcome.claimed) return storeOwned(orderId, request, idempotencyKey, now, intake);
    const existing = outcome.existing;
    // The key expired between our insert and our read: it is free again.
    if (existing === null) return place(request, intake);
    if (existing.requestHash !== requestHash) throw new IdempotencyKeyReusedError();
    const earlier = await atStore(() => orders.findById(existing.orderId, { majority: true }));
    if (earlier) return { order: earlier, replayed: true };
    if (now.getTime() - existing.claimedAt.getTime() < settings.idempotencyLeaseMs)
      throw new IdempotencyKeyInFlightError();
    if (!(await atStore(() => idempotency.takeOver(idempotencyKey, existing.claimedAt, now))))
      throw new IdempotencyKeyInFlightError();
    // Same order id as the abandoned first attempt: if that attempt did insert after all, we replay it.
    return storeOwned(existing.orderId, request, idempotencyKey, now, intake);
  }

  async function storeOwned(
    orderId: string,
    request: PlaceRequest,
    key: string,
    claimedAt: Date,
    intake: IntakeAttempt,
  ): Promise<PlaceResult> {
    try {
      return { order: await store(orderId, request, intake), replayed: false };
    } catch (error) {
      if (error instanceof DuplicateOrderIdError) {
        const earlier = await atStore(() => orders.findById(orderId, { majority: true }));
        if (earlier) return { order: earlier, replayed: true };
      }
      // Free the key so that the client's retry can take over at once instead of getting 409s.
      await atStore(() => idempotency.release(key, claimedAt)).catch(() => {});
      throw error;
    }
  }

  async function store(orderId: string, request: PlaceRequest, intake: IntakeAttempt): Promise<OrderRecord> {
    const order = newOrderRecord(orderId, request.draft, clock.now(), {
      partitions: settings.partitions,
      dispatchGraceMs: settings.dispatchGraceMs,
      idempotencyKey: request.idempotencyKey,
      account: request.account,
    });
    intake.order = order;
    intake.onOrderId?.(orderId);
    try {
      await atStore(() => orders.insert(order));
    } catch (error) {
      if (error instanceof DuplicateOrderIdError) throw error;
      // Ambiguous: a network error or write-concern timeout after the server may have applied the write.
      // Only a majority-committed read-back proves the order durable; otherwise the client gets a 500.
      const stored = await atStore(() => orders.findById(orderId, { majority: true })).catch(() => null);
      hooks.onAmbiguousWrite?.(orderId, error, stored !== null);
      if (!stored) throw error;
    }
    // Stored after its client was told 500: the withdrawal takes it from here.
    if (intake.abandoned) return order;
    try {
      await dispatcher.dispatch(order, "intake");
    } catch (error) {
      hooks.onDispatchFailed?.(orderId, error);
      orders.markDispatchFailed(orderId, clock.now()).catch(() => {});
    }
    return order;
  }

  /** Another account's order is as unknown as a missing one (no probing of ids across clients). */
  async function get(id: string, account: string): Promise<OrderRecord> {
    const order = await orders.findById(id);
    if (!order || order.account !== account) throw new OrderNotFoundError(id);
    return order;
  }

  /** A page of the account's orders and the cursor of the next page (null on the last one). */
  async function list(
    account: string,
    page: OrderListPage,
  ): Promise<{ orders: OrderRecord[]; next: string | null }> {
    // One more than asked tells whether another page exists without a second query.
    const found = await orders.listForAccount(account, { ...page, limit: page.limit + 1 });
    const pageOrders = found.slice(0, page.limit);
    const last = pageOrders.at(-1);
    return { orders: pageOrders, next: found.length > page.limit && last ? last._id : null };
  }

  /**
   * Throws IntakeOverloadedError while orders are shed (admission.ts). Asked once per order, first of
   * all, before the caller's key is looked up (a look-up would wait on the same store) and before any id
   * is in play: a shed order is known not to exist.
   */
  function admit(): void {
    admission?.admit();
  }

  return { place: placeWithinDeadline, admit, get, list };
}

export type OrderService = ReturnType<typeof createOrderService>;

function acceptedEvent(order: OrderRecord): OrderEvent {
  return {
    order_id: order._id,
    account: order.account,
    status: "accepted",
    at: order.created_at,
    filled_quantity: 0,
    average_price_cents: null,
    rejection_reason: null,
  };
}

/** Account names cannot hold a space, so the scoped key is unambiguous. */
export function scopedIdempotencyKey(account: string, key: string): string {
  return `${account} ${key}`;
}

/** The request's identity for idempotency: the normalised order, so "10.5" and 10.50 are the same body. */
export function hashDraft(draft: OrderDraft): string {
  const canonical = JSON.stringify([
    draft.type,
    draft.side,
    draft.instrument,
    draft.limitPriceCents,
    draft.quantity,
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}
