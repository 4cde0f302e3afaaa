/**
 * The simulated venue's fill model: what happens to an order after the venue acknowledged it, as a plan
 * of execution reports made once, at the acknowledgement. Pure: the only randomness is the `random()`
 * it is given, so a seeded generator gives the same plan every time.
 *
 * A plan is an intention, not a promise: when its step comes, `execute` holds it against the order's
 * open quantity at that moment, because a burst (execution-feed.ts) may have traded shares meanwhile.
 */
import type { ExecType } from "../domain/execution.ts";
import type { ExchangeOrder } from "./port.ts";

export interface FillSettings {
  /** Trade reports that fill one order; 0: no reports at all. EXCHANGE_FILLS_PER_ORDER, default 2. */
  fillsPerOrder: number;
  /** Delay of each report after the previous one (the first: after the acknowledgement); default 100. */
  fillDelayMs: number;
  /** Probability in [0, 1] that a limit order trades half and then ends cancelled or expired; default 0.2. */
  limitUnfilledRate: number;
}

export interface PlannedReport {
  /** Milliseconds after the previous report of the same order (the first: after the acknowledgement). */
  delayMs: number;
  exec_type: ExecType;
  /** Shares to trade; 0 for cancelled and expired. */
  qty: number;
  /** null for cancelled and expired. */
  price_cents: number | null;
}

/** An order's fill state as the venue counts it. */
export interface OrderFill {
  client_order_id: string;
  venue_order_id: string;
  type: ExchangeOrder["type"];
  instrument: string;
  limit_price_cents: number | null;
  quantity: number;
  cum_qty: number;
  leaves_qty: number;
  exec_type_last: ExecType | null;
}

/** The fields of a report that follow from the order's state, before the feed numbers it. */
export interface ExecutedStep {
  exec_type: ExecType;
  last_qty: number;
  last_price_cents: number | null;
  cum_qty: number;
  leaves_qty: number;
}

const PRICE_MIN_CENTS = 1_000;
const PRICE_MAX_CENTS = 100_000;
/** Market trades land within this many cents of the instrument's reference price. */
const MARKET_JITTER_CENTS = 5;

/** A stable price per instrument (FNV-1a of its code), so that every run quotes the same instrument alike. */
export function referencePriceCents(instrument: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < instrument.length; i++) {
    hash ^= instrument.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return PRICE_MIN_CENTS + (hash % (PRICE_MAX_CENTS - PRICE_MIN_CENTS + 1));
}

/** The price of one trade: the limit price, or the reference price give or take a few cents. */
export function tradePriceCents(
  order: Pick<ExchangeOrder, "type" | "instrument" | "limit_price_cents">,
  random: () => number,
): number {
  if (order.type === "limit" && order.limit_price_cents !== null) return order.limit_price_cents;
  const jitter = Math.round((random() * 2 - 1) * MARKET_JITTER_CENTS);
  return Math.max(1, referencePriceCents(order.instrument) + jitter);
}

/** `total` in `parts` integers that differ by at most one, the larger ones first. */
export function splitEvenly(total: number, parts: number): number[] {
  if (parts <= 0 || total <= 0) return [];
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * The reports one newly acknowledged order will get. Draws, in this order: whether a limit order stays
 * partly unfilled, then (if so) cancelled or expired, then one price per market trade.
 */
export function planFills(
  order: Pick<ExchangeOrder, "type" | "instrument" | "limit_price_cents" | "quantity">,
  settings: FillSettings,
  random: () => number,
): PlannedReport[] {
  const fills = settings.fillsPerOrder;
  if (fills <= 0) return [];
  const delayMs = settings.fillDelayMs;
  let traded = order.quantity;
  let end: ExecType | null = null;
  if (order.type === "limit" && random() < settings.limitUnfilledRate) {
    traded = Math.floor(order.quantity / 2);
    end = random() < 0.5 ? "cancelled" : "expired";
  }
  const plan: PlannedReport[] = splitEvenly(traded, Math.min(fills, traded)).map((qty) => ({
    delayMs,
    exec_type: "trade",
    qty,
    price_cents: tradePriceCents(order, random),
  }));
  if (end !== null) plan.push({ delayMs, exec_type: end, qty: 0, price_cents: null });
  return plan;
}

/**
 * What a planned report becomes against the order's state now: a trade shrinks to the open quantity, and
 * nothing happens (null) once the order has no open quantity left, an end included.
 */
export function execute(
  fill: Pick<OrderFill, "cum_qty" | "leaves_qty">,
  planned: Pick<PlannedReport, "exec_type" | "qty" | "price_cents">,
): ExecutedStep | null {
  if (fill.leaves_qty <= 0) return null;
  if (planned.exec_type !== "trade") {
    return {
      exec_type: planned.exec_type,
      last_qty: 0,
      last_price_cents: null,
      cum_qty: fill.cum_qty,
      leaves_qty: 0,
    };
  }
  const qty = Math.min(planned.qty, fill.leaves_qty);
  if (qty <= 0) return null;
  return {
    exec_type: "trade",
    last_qty: qty,
    last_price_cents: planned.price_cents,
    cum_qty: fill.cum_qty + qty,
    leaves_qty: fill.leaves_qty - qty,
  };
}
