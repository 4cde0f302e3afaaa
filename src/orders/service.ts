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
  type OrderRepository,
  type PlacementDispatcher,
} from "../domain/ports.ts";

export interface OrderServiceSettings {
  partitions: number;
  dispatchGraceMs: number;
  idempotencyTtlMs: number;
  /** A key whose first request is older than this and produced no order is presumed abandoned. */
  idempotencyLeaseMs: number;
}

export interface OrderServiceHooks {
  onDispatchFailed?(orderId: string, error: unknown): void;
  onAmbiguousWrite?(orderId: string, error: unknown, stored: boolean): void;
}

/** Told the id an order is stored under, right before its insert (from then on the order may exist). */
export interface IntakeObserver {
  onOrderId?(orderId: string): void;
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
  hooks?: OrderServiceHooks;
}) {
  const { orders, idempotency, dispatcher, clock, ids, settings, hooks = {} } = deps;

  async function place(
    draft: OrderDraft,
    idempotencyKey: string | null,
    intake: IntakeObserver = {},
  ): Promise<PlaceResult> {
    if (idempotencyKey === null) return { order: await store(ids(), draft, null, intake), replayed: false };
    const requestHash = hashDraft(draft);
    const now = clock.now();
    const orderId = ids();
    const outcome = await idempotency.claim(
      { key: idempotencyKey, requestHash, orderId, claimedAt: now },
      new Date(now.getTime() + settings.idempotencyTtlMs),
    );
    if (outcome.claimed) return storeOwned(orderId, draft, idempotencyKey, now, intake);
    const existing = outcome.existing;
    // The key expired between our insert and our read: it is free again.
    if (existing === null) return place(draft, idempotencyKey, intake);
    if (existing.requestHash !== requestHash) throw new IdempotencyKeyReusedError();
    const earlier = await orders.findById(existing.orderId, { majority: true });
    if (earlier) return { order: earlier, replayed: true };
    if (now.getTime() - existing.claimedAt.getTime() < settings.idempotencyLeaseMs)
      throw new IdempotencyKeyInFlightError();
    if (!(await idempotency.takeOver(idempotencyKey, existing.claimedAt, now)))
      throw new IdempotencyKeyInFlightError();
    // Same order id as the abandoned first attempt: if that attempt did insert after all, we replay it.
    return storeOwned(existing.orderId, draft, idempotencyKey, now, intake);
  }

  async function storeOwned(
    orderId: string,
    draft: OrderDraft,
    key: string,
    claimedAt: Date,
    intake: IntakeObserver,
  ): Promise<PlaceResult> {
    try {
      return { order: await store(orderId, draft, key, intake), replayed: false };
    } catch (error) {
      if (error instanceof DuplicateOrderIdError) {
        const earlier = await orders.findById(orderId, { majority: true });
        if (earlier) return { order: earlier, replayed: true };
      }
      // Free the key so that the client's retry can take over at once instead of getting 409s.
      await idempotency.release(key, claimedAt).catch(() => {});
      throw error;
    }
  }

  async function store(
    orderId: string,
    draft: OrderDraft,
    key: string | null,
    intake: IntakeObserver,
  ): Promise<OrderRecord> {
    const order = newOrderRecord(orderId, draft, clock.now(), {
      partitions: settings.partitions,
      dispatchGraceMs: settings.dispatchGraceMs,
      idempotencyKey: key,
    });
    intake.onOrderId?.(orderId);
    try {
      await orders.insert(order);
    } catch (error) {
      if (error instanceof DuplicateOrderIdError) throw error;
      // Ambiguous: a network error or write-concern timeout after the server may have applied the write.
      // Only a majority-committed read-back proves the order durable; otherwise the client gets a 500.
      const stored = await orders.findById(orderId, { majority: true }).catch(() => null);
      hooks.onAmbiguousWrite?.(orderId, error, stored !== null);
      if (!stored) throw error;
    }
    try {
      await dispatcher.dispatch(order, "intake");
    } catch (error) {
      hooks.onDispatchFailed?.(orderId, error);
      orders.markDispatchFailed(orderId, clock.now()).catch(() => {});
    }
    return order;
  }

  async function get(id: string): Promise<OrderRecord> {
    const order = await orders.findById(id);
    if (!order) throw new OrderNotFoundError(id);
    return order;
  }

  return { place, get };
}

export type OrderService = ReturnType<typeof createOrderService>;

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
