/**
 * Applied fills against the venue's: for every order the venue traded, the shares of its applied trade
 * executions (in the `executions` collection) must equal the venue's cumulative quantity, the order's
 * summary must say the same, and no execution may be flagged (an overfill, a fill of an order that was
 * never placed). `compareFills` is pure (test/chaos/checker.test.ts); `readAppliedFills` gathers.
 */
import type { Db } from "mongodb";

/** What the venue says of each order it traded (GET /fills of the simulated venue). */
export type VenueFillsByOrder = Record<
  string,
  { cum_qty: number; leaves_qty: number; exec_type_last: string | null }
>;

/** What this system applied to one order. */
export interface AppliedFill {
  /** Shares of the applied (not flagged) trade executions in the executions collection. */
  executed: number;
  /** The order document's filled_quantity (its summary). */
  summary: number;
  /** Executions kept but not applied. */
  flagged: number;
  quantity: number;
  status: string;
}

export interface FillVerdict {
  /** Orders the venue traded or ended. */
  orders: number;
  venueShares: number;
  appliedShares: number;
  /** Orders whose applied shares differ from the venue's (lost or doubled reports), or whose summary lags. */
  mismatched: { order_id: string; venue: number; executed: number; summary: number }[];
  /** Orders whose applied shares exceed their quantity. */
  overfilled: string[];
  flagged: number;
  /** Orders the venue ended (cancelled, expired) or filled whose status does not say so. */
  wrongStatus: { order_id: string; venue: string | null; status: string }[];
}

export function compareFills(
  venue: VenueFillsByOrder,
  applied: ReadonlyMap<string, AppliedFill>,
): FillVerdict {
  const verdict: FillVerdict = {
    orders: 0,
    venueShares: 0,
    appliedShares: 0,
    mismatched: [],
    overfilled: [],
    flagged: 0,
    wrongStatus: [],
  };
  for (const fill of applied.values()) {
    verdict.appliedShares += fill.executed;
    verdict.flagged += fill.flagged;
  }
  for (const [orderId, order] of applied)
    if (order.executed > order.quantity) verdict.overfilled.push(orderId);
  for (const [orderId, at] of Object.entries(venue)) {
    if (at.cum_qty === 0 && at.exec_type_last === null) continue;
    verdict.orders += 1;
    verdict.venueShares += at.cum_qty;
    const ours = applied.get(orderId);
    const executed = ours?.executed ?? 0;
    const summary = ours?.summary ?? 0;
    if (executed !== at.cum_qty || summary !== at.cum_qty)
      verdict.mismatched.push({ order_id: orderId, venue: at.cum_qty, executed, summary });
    const expected = at.leaves_qty === 0 ? expectedEnd(at, ours) : null;
    if (ours && expected !== null && ours.status !== expected)
      verdict.wrongStatus.push({ order_id: orderId, venue: at.exec_type_last, status: ours.status });
  }
  return verdict;
}

/** The status an order the venue finished must have: filled, or how the venue ended its rest. */
function expectedEnd(at: VenueFillsByOrder[string], ours: AppliedFill | undefined): string | null {
  if (ours && at.cum_qty >= ours.quantity) return "filled";
  return at.exec_type_last === "cancelled" || at.exec_type_last === "expired" ? at.exec_type_last : null;
}

/** Whether a verdict holds no violation. */
export function fillsAgree(verdict: FillVerdict): boolean {
  return (
    verdict.mismatched.length === 0 &&
    verdict.overfilled.length === 0 &&
    verdict.flagged === 0 &&
    verdict.wrongStatus.length === 0
  );
}

/** Reads what was applied to every order with executions (or to `orderIds`). */
export async function readAppliedFills(
  db: Db,
  orderIds?: readonly string[],
): Promise<Map<string, AppliedFill>> {
  const filter = orderIds ? { order_id: { $in: [...orderIds] } } : {};
  const executions = await db
    .collection<{ order_id: string; exec_type: string; quantity: number; flagged: string | null }>(
      "executions",
    )
    .find(filter, { projection: { order_id: 1, exec_type: 1, quantity: 1, flagged: 1 } })
    .toArray();
  const applied = new Map<string, AppliedFill>();
  for (const execution of executions) {
    const fill = applied.get(execution.order_id) ?? {
      executed: 0,
      summary: 0,
      flagged: 0,
      quantity: 0,
      status: "unknown",
    };
    if (execution.flagged !== null) fill.flagged += 1;
    else if (execution.exec_type === "trade") fill.executed += execution.quantity;
    applied.set(execution.order_id, fill);
  }
  const orders = await db
    .collection<{ _id: string; filled_quantity?: number; quantity: number; status: string }>("orders")
    .find(
      { _id: { $in: [...applied.keys()] } },
      { projection: { filled_quantity: 1, quantity: 1, status: 1 } },
    )
    .toArray();
  for (const order of orders) {
    const fill = applied.get(order._id) as AppliedFill;
    fill.summary = order.filled_quantity ?? 0;
    fill.quantity = order.quantity;
    fill.status = order.status;
  }
  return applied;
}
