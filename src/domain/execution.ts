/**
 * Execution reports: what the venue says happened to an order after it acknowledged it, and how an
 * order's fill state follows from the reports applied to it (docs/adr/0006-execution-reports.md).
 *
 * The fill state is a fold over the set of applied executions, never over their arrival order: reports
 * may be applied in any order (several partitions, several actors, a resend), so the same set gives
 * the same state whatever the order (for a set that does not overfill: which trade of an overfilling
 * set is the one flagged depends on the order). An execution is known by the venue's `exec_id`;
 * applying it twice changes nothing (it is stored once, under that id).
 */
import type { OrderRecord, OrderStatus } from "./order.ts";

export const EXEC_TYPES = ["trade", "cancelled", "expired"] as const;
export type ExecType = (typeof EXEC_TYPES)[number];

/** One report as the venue sends it on its feed (the JSON frame of type "execution", less `type`). */
export interface ExecutionReport {
  /** The venue's execution id: unique per venue, the idempotency key of applying the report. */
  exec_id: string;
  /** The venue session the sequence number belongs to (a venue restart starts a new session at 1). */
  session: string;
  /** Per-session sequence number, 1, 2, 3 ... without holes. */
  seq: number;
  /** Our order id (the client order id the placement actor sent). */
  client_order_id: string;
  venue_order_id: string;
  exec_type: ExecType;
  /** Shares traded by this report; 0 for cancelled and expired. */
  last_qty: number;
  /** Price of this trade in cents; null for cancelled and expired. */
  last_price_cents: number | null;
  /** Shares traded so far for the order, this report included, as the venue counts them. */
  cum_qty: number;
  /** Shares still open at the venue after this report (0 once filled, cancelled or expired). */
  leaves_qty: number;
  /** When the venue executed it (ISO 8601). */
  transact_time: string;
}

/** An execution as the `executions` collection keeps it (its _id is the venue's exec_id). */
export interface StoredExecution {
  _id: string;
  order_id: string;
  venue_order_id: string;
  account: string;
  session: string;
  seq: number;
  exec_type: ExecType;
  quantity: number;
  price_cents: number | null;
  cum_qty: number;
  leaves_qty: number;
  executed_at: Date;
  /** When this system stored it: executed_at -> applied_at is the apply lag. */
  applied_at: Date;
  /** Why it was kept without being applied (it contradicts the order), or null when applied. */
  flagged: "overfill" | "not_placeable" | null;
}

/** The fields of an order that its executions decide (the executions themselves live apart). */
export interface FillSummary {
  status: OrderStatus;
  /** Shares of the applied trades. */
  filled_quantity: number;
  /** Sum of quantity x price in cents over the applied trades: the average price is this / filled. */
  filled_notional_cents: number;
}

/** Statuses an execution can set; once reached, only more trades of a partial fill may follow. */
export const EXECUTION_STATUSES = ["partially_filled", "filled", "cancelled", "expired"] as const;

export function isExecutionStatus(status: OrderStatus): boolean {
  return (EXECUTION_STATUSES as readonly string[]).includes(status);
}

/** Orders the venue can never have traded: a fill for one is flagged, not applied. */
const NOT_PLACEABLE: readonly OrderStatus[] = ["rejected", "withdrawn"];

export type ApplyOutcome = "applied" | "duplicate" | "overfill" | "not_placeable";

/**
 * Folds reports not applied before (distinct exec_ids) into an order's fill summary. Returns the new
 * summary and what becomes of each report, in the order given: applied, or flagged (an overfill, a
 * fill of an order that was never placed). Pure: the caller stores the executions and the summary.
 */
export function foldReports(
  order: Pick<OrderRecord, "status" | "quantity"> & Partial<FillSummary>,
  reports: readonly Pick<ExecutionReport, "exec_type" | "last_qty" | "last_price_cents">[],
): { summary: FillSummary; outcomes: Exclude<ApplyOutcome, "duplicate">[] } {
  let filled = order.filled_quantity ?? 0;
  let notional = order.filled_notional_cents ?? 0;
  let ended: OrderStatus | null = null;
  const outcomes = reports.map((report) => {
    if (NOT_PLACEABLE.includes(order.status)) return "not_placeable" as const;
    if (report.exec_type === "trade") {
      if (filled + report.last_qty > order.quantity) return "overfill" as const;
      filled += report.last_qty;
      notional += report.last_qty * (report.last_price_cents ?? 0);
    } else {
      ended ??= report.exec_type;
    }
    return "applied" as const;
  });
  return {
    summary: {
      status: statusAfter(order.status, order.quantity, filled, ended),
      filled_quantity: filled,
      filled_notional_cents: notional,
    },
    outcomes,
  };
}

/**
 * The summary an order's stored executions give, and which of them are flagged, folded in the venue's
 * order (execution time, then session and sequence number): the same set always gives the same
 * summary and the same flags, however and whenever its members were stored.
 */
export function summarize(
  order: Pick<OrderRecord, "status" | "quantity">,
  executions: readonly Pick<
    StoredExecution,
    "exec_type" | "quantity" | "price_cents" | "executed_at" | "session" | "seq"
  >[],
): { summary: FillSummary; flags: StoredExecution["flagged"][]; ordered: number[] } {
  const ordered = executions.map((_, i) => i).sort((a, b) => venueOrder(executions[a], executions[b]));
  const { summary, outcomes } = foldReports(
    { status: order.status, quantity: order.quantity },
    ordered.map((i) => {
      const e = executions[i] as (typeof executions)[number];
      return { exec_type: e.exec_type, last_qty: e.quantity, last_price_cents: e.price_cents };
    }),
  );
  const flags: StoredExecution["flagged"][] = executions.map(() => null);
  ordered.forEach((i, k) => {
    const outcome = outcomes[k];
    flags[i] = outcome === "overfill" || outcome === "not_placeable" ? outcome : null;
  });
  return { summary, flags, ordered };
}

type VenueOrdered = Pick<StoredExecution, "executed_at" | "session" | "seq"> | undefined;

/** The venue's order of two executions: by execution time, then session and sequence number. */
export function venueOrder(a: VenueOrdered, b: VenueOrdered): number {
  if (!a || !b) return 0;
  return (
    a.executed_at.getTime() - b.executed_at.getTime() || a.session.localeCompare(b.session) || a.seq - b.seq
  );
}

/**
 * The status the executions imply: filled when every share traded; an order the venue ended
 * (cancelled, expired) stays ended, and trades it reported before the end still count; else partially
 * filled once anything traded; else what the order was. Rejected and withdrawn orders keep theirs.
 */
function statusAfter(
  current: OrderStatus,
  quantity: number,
  filled: number,
  ended: OrderStatus | null,
): OrderStatus {
  if (NOT_PLACEABLE.includes(current)) return current;
  if (filled >= quantity) return "filled";
  if (current === "cancelled" || current === "expired") return current;
  if (ended) return ended;
  if (filled > 0) return "partially_filled";
  return current;
}

/** The average price of the applied trades in cents (fractional), or null before the first trade. */
export function averagePriceCents(summary: Pick<FillSummary, "filled_quantity" | "filled_notional_cents">) {
  return summary.filled_quantity > 0 ? summary.filled_notional_cents / summary.filled_quantity : null;
}
