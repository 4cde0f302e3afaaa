/**
 * Applied fills against the venue's: for every order the venue traded, the shares of its applied trade
 * executions (in the `executions` collection) must equal the venue's cumulative quantity, the order's
 * summary must say the same, and no execution may be flagged (an overfill, a fill of an order that was
 * never placed). `compareFills` and `checkFills` (the chaos rule) are pure (test/chaos/checker.test.ts);
 * `readAppliedFills` gathers.
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

/** How the wait for the execution path ended: caught up, or what it was still waiting for. */
export interface ExecutionsWait {
  caughtUp: boolean;
  ms: number;
  /** Orders the venue still had open shares of. */
  openLeaves: number;
  /** Executions-stream entries unread or unacknowledged; null when Redis did not answer. */
  backlog: number | null;
  reportsSent: number;
  /** Documents in `executions`; null when MongoDB did not answer. */
  reportsStored: number | null;
  /** Entries the execution actors gave up on (the executions dead-letter stream); null: Redis did not answer. */
  deadLettered: number | null;
}

/** What the chaos checker read of the execution path once the wait ended. */
export interface CollectedFills {
  venue: VenueFillsByOrder;
  applied: ReadonlyMap<string, AppliedFill>;
  wait: ExecutionsWait;
  /** The stored order and executions of the first disagreeing orders, one line each (`readFillEvidence`). */
  evidence?: string[];
}

export interface FillChecks {
  caughtUp: boolean;
  waitMs: number;
  reportsSent: number;
  reportsStored: number | null;
  deadLettered: number | null;
  orders: number;
  venueShares: number;
  appliedShares: number;
  mismatched: number;
  overfilled: number;
  flagged: number;
  wrongStatus: number;
  /** The first few order ids of each finding, for the printed table. */
  firstIds: { mismatched: string[]; overfilled: string[]; flagged: string[]; wrongStatus: string[] };
  agree: boolean;
}

const FIRST_IDS = 5;

/** The chaos rule: the execution path caught up, and every order's applied fills are the venue's. */
export function checkFills(collected: CollectedFills): {
  checks: FillChecks;
  violations: string[];
  verdict: FillVerdict;
} {
  const { wait } = collected;
  const verdict = compareFills(collected.venue, collected.applied);
  const flaggedIds = [...collected.applied].filter(([, fill]) => fill.flagged > 0).map(([id]) => id);
  const checks: FillChecks = {
    caughtUp: wait.caughtUp,
    waitMs: wait.ms,
    reportsSent: wait.reportsSent,
    reportsStored: wait.reportsStored,
    deadLettered: wait.deadLettered,
    orders: verdict.orders,
    venueShares: verdict.venueShares,
    appliedShares: verdict.appliedShares,
    mismatched: verdict.mismatched.length,
    overfilled: verdict.overfilled.length,
    flagged: verdict.flagged,
    wrongStatus: verdict.wrongStatus.length,
    firstIds: {
      mismatched: verdict.mismatched.slice(0, FIRST_IDS).map((m) => m.order_id),
      overfilled: verdict.overfilled.slice(0, FIRST_IDS),
      flagged: flaggedIds.slice(0, FIRST_IDS),
      wrongStatus: verdict.wrongStatus.slice(0, FIRST_IDS).map((w) => w.order_id),
    },
    agree: wait.caughtUp && fillsAgree(verdict),
  };
  const violations: string[] = [];
  const first = (ids: string[]) => ` (first: ${ids.join(", ")})`;
  if (!wait.caughtUp)
    violations.push(
      `the execution reports did not catch up within ${Math.round(wait.ms / 1000)} s: ${wait.openLeaves} orders open at the venue, stream backlog ${wait.backlog ?? "?"}, ${wait.reportsStored ?? "?"} of ${wait.reportsSent} reports stored, ${wait.deadLettered ?? "?"} dead-lettered`,
    );
  if (checks.mismatched > 0)
    violations.push(
      `${checks.mismatched} orders' applied fills differ from the venue's${first(checks.firstIds.mismatched)}`,
    );
  if (checks.overfilled > 0)
    violations.push(`${checks.overfilled} orders overfilled${first(checks.firstIds.overfilled)}`);
  if (checks.flagged > 0)
    violations.push(
      `${checks.flagged} execution reports flagged, not applied${first(checks.firstIds.flagged)}`,
    );
  if (checks.wrongStatus > 0)
    violations.push(
      `${checks.wrongStatus} orders the venue finished carry another status${first(checks.firstIds.wrongStatus)}`,
    );
  return { checks, violations, verdict };
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

/** One line per order: its stored summary, then its executions in the venue's sequence. */
export async function readFillEvidence(db: Db, orderIds: readonly string[]): Promise<string[]> {
  const ids = [...orderIds];
  const orders = await db
    .collection<{
      _id: string;
      status: string;
      quantity: number;
      filled_quantity?: number;
      execution_count?: number;
    }>("orders")
    .find({ _id: { $in: ids } })
    .toArray();
  const executions = await db
    .collection<{
      order_id: string;
      seq: number;
      exec_type: string;
      quantity: number;
      flagged: string | null;
      applied_at: Date;
    }>("executions")
    .find({ order_id: { $in: ids } })
    .toArray();
  return orders.map((order) => {
    const own = executions
      .filter((e) => e.order_id === order._id)
      .sort((a, b) => a.seq - b.seq)
      .map(
        (e) =>
          `#${e.seq} ${e.exec_type} ${e.quantity}${e.flagged ? ` ${e.flagged}` : ""} at ${e.applied_at.toISOString()}`,
      );
    return `${order._id} ${order.status} quantity=${order.quantity} filled=${order.filled_quantity ?? 0} count=${order.execution_count ?? 0}: ${own.join(", ")}`;
  });
}
