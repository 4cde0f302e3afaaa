import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseReport } from "../../actors/executions/execution-actor.ts";
import {
  averagePriceCents,
  type ExecutionReport,
  foldReports,
  summarize,
} from "../../src/domain/execution.ts";
import { canTransition } from "../../src/domain/order.ts";

const NOW = new Date("2026-12-03T10:00:00Z");

/** A report as the executions collection stores it. */
function stored(r: ExecutionReport) {
  return {
    exec_type: r.exec_type,
    quantity: r.last_qty,
    price_cents: r.last_price_cents,
    executed_at: new Date(r.transact_time),
    session: r.session,
    seq: r.seq,
  };
}

function report(seq: number, overrides: Partial<ExecutionReport> = {}): ExecutionReport {
  return {
    exec_id: `S-${seq}`,
    session: "S",
    seq,
    client_order_id: "order-1",
    venue_order_id: "venue-1",
    exec_type: "trade",
    last_qty: 1,
    last_price_cents: 10_000 + seq,
    cum_qty: seq,
    leaves_qty: 0,
    transact_time: new Date(NOW.getTime() - 1_000 + seq).toISOString(),
    ...overrides,
  };
}

describe("the fill summary is a fold over the set of executions", () => {
  test("trades fill the order; the average price is the quantity-weighted mean", () => {
    const { summary, outcomes } = foldReports({ status: "placed", quantity: 10 }, [
      report(1, { last_qty: 4, last_price_cents: 1_000 }),
      report(2, { last_qty: 6, last_price_cents: 2_000 }),
    ]);
    expect(outcomes).toEqual(["applied", "applied"]);
    expect(summary.status).toBe("filled");
    expect(summary.filled_quantity).toBe(10);
    expect(averagePriceCents(summary)).toBe((4 * 1_000 + 6 * 2_000) / 10);
  });

  test("a part fill is partially_filled, and folding on from the summary adds up", () => {
    const first = foldReports({ status: "placed", quantity: 10 }, [report(1, { last_qty: 3 })]);
    expect(first.summary.status).toBe("partially_filled");
    const next = foldReports({ ...first.summary, quantity: 10 }, [report(2, { last_qty: 7 })]);
    expect(next.summary).toMatchObject({ status: "filled", filled_quantity: 10 });
  });

  test("a fill that arrives before the placement's acknowledgement is applied (accepted -> partially_filled)", () => {
    const { summary } = foldReports({ status: "accepted", quantity: 5 }, [report(1)]);
    expect(summary.status).toBe("partially_filled");
    expect(canTransition("accepted", "partially_filled")).toBe(true);
  });

  test("an overfill is flagged, never applied", () => {
    const { summary, outcomes } = foldReports({ status: "placed", quantity: 2 }, [
      report(1, { last_qty: 2 }),
      report(2, { last_qty: 1 }),
    ]);
    expect(outcomes).toEqual(["applied", "overfill"]);
    expect(summary).toMatchObject({ status: "filled", filled_quantity: 2 });
  });

  test("fills of a rejected or withdrawn order are flagged; the status stays", () => {
    for (const status of ["rejected", "withdrawn"] as const) {
      const { summary, outcomes } = foldReports({ status, quantity: 5 }, [report(1)]);
      expect(outcomes).toEqual(["not_placeable"]);
      expect(summary).toMatchObject({ status, filled_quantity: 0 });
    }
  });

  test("cancelled and expired end a part fill, and stay: trades reported before the end still count", () => {
    for (const end of ["cancelled", "expired"] as const) {
      const ended = foldReports({ status: "placed", quantity: 10 }, [
        report(2, { exec_type: end, last_qty: 0, last_price_cents: null }),
        report(1, { last_qty: 4 }),
      ]);
      expect(ended.summary).toMatchObject({ status: end, filled_quantity: 4 });
      const later = foldReports({ ...ended.summary, quantity: 10 }, [report(3, { last_qty: 2 })]);
      expect(later.summary).toMatchObject({ status: end, filled_quantity: 6 });
    }
  });

  test("any order of arrival, in any grouping into batches, gives the summary of the whole set", () => {
    const reports = [
      report(1, { last_qty: 2 }),
      report(2, { last_qty: 3 }),
      report(3, { last_qty: 1 }),
      report(4, { exec_type: "cancelled", last_qty: 0, last_price_cents: null }),
    ];
    const whole = summarize({ status: "placed", quantity: 10 }, reports.map(stored)).summary;
    expect(whole).toMatchObject({ status: "cancelled", filled_quantity: 6 });
    void fc.assert(
      fc.property(
        fc.shuffledSubarray(reports, { minLength: 4, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }),
        (order, cuts) => {
          let stored: Parameters<typeof foldReports>[0] = { status: "placed", quantity: 10 };
          const batches = [[], [], [], []] as ExecutionReport[][];
          order.forEach((r, i) => {
            batches[cuts[i] as number]?.push(r);
          });
          for (const batch of batches) stored = { ...stored, ...foldReports(stored, batch).summary };
          expect({ ...stored, quantity: undefined }).toEqual({ ...whole, quantity: undefined });
        },
      ),
    );
  });
});

describe("the flags of an order's stored executions", () => {
  test("the same set gives the same flags in any order of storing: the trades past the quantity, in the venue's order", () => {
    const reports = [report(1, { last_qty: 3 }), report(2, { last_qty: 2 }), report(3, { last_qty: 1 })];
    void fc.assert(
      fc.property(fc.shuffledSubarray(reports, { minLength: 3, maxLength: 3 }), (order) => {
        const { summary, flags } = summarize({ status: "placed", quantity: 4 }, order.map(stored));
        expect(summary).toMatchObject({ status: "filled", filled_quantity: 3 + 1 });
        // The second trade (seq 2) would pass the quantity after seq 1; seq 3 still fits.
        expect(order.map((r, i) => [r.seq, flags[i]]).sort()).toEqual([
          [1, null],
          [2, "overfill"],
          [3, null],
        ]);
      }),
    );
  });
});

describe("stream entries", () => {
  test("a valid report parses; anything else is a poison entry", () => {
    const valid = report(1);
    expect(parseReport(JSON.stringify({ type: "execution", ...valid }))).toMatchObject(valid);
    expect(parseReport(undefined)).toBeNull();
    expect(parseReport("{")).toBeNull();
    expect(parseReport(JSON.stringify({ ...valid, exec_type: "fill" }))).toBeNull();
    expect(parseReport(JSON.stringify({ ...valid, last_qty: -1 }))).toBeNull();
    expect(parseReport(JSON.stringify({ ...valid, transact_time: "yesterday" }))).toBeNull();
  });
});
