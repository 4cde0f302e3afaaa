/**
 * The chaos checker's rules (bench/chaos/analysis.ts) on hand-made client logs and read-outs (pure, no
 * I/O): a checker that never fails proves nothing, so each violation it exists to catch is shown to be
 * caught.
 */
import { describe, expect, test } from "bun:test";
import {
  type Analysis,
  analyze,
  type Collected,
  drainPoll,
  formatCounts,
  type StoredOrder,
} from "../../bench/chaos/analysis.ts";
import type { Attempt, OpKind, OpResult } from "../../bench/chaos/client.ts";
import {
  type ChaosReport,
  faultSummary,
  latencyReport,
  requestSummary,
  summaryText,
} from "../../bench/chaos/report.ts";

function op(
  index: number,
  kind: OpKind,
  attempts: Attempt[],
  extra: { key?: string | null; ref?: number; quantity?: number } = {},
): OpResult {
  const last = attempts.at(-1);
  const outcome =
    last?.status === 201
      ? last.replayed
        ? "replayed"
        : "created"
      : last?.status === 422
        ? "rejected-422"
        : "unknown";
  return {
    op: {
      index,
      kind,
      key: extra.key === undefined ? (kind === "new-unkeyed" ? null : `k${index}`) : extra.key,
      body: {},
      quantity: extra.quantity ?? index + 1,
      ref: extra.ref ?? null,
      scheduledMs: index,
    },
    attempts,
    outcome,
    id: last?.status === 201 ? (last.id ?? null) : null,
    finishedMs: index + 10,
  };
}

const ok = (id: string, startMs = 0, replayed = false): Attempt => ({
  startMs,
  latencyMs: 5,
  status: 201,
  id,
  replayed,
});
const fail = (status: Attempt["status"], startMs = 0): Attempt => ({ startMs, latencyMs: 5, status });

function stored(id: string, quantity: number, extra: Partial<StoredOrder> = {}): StoredOrder {
  return {
    _id: id,
    status: "placed",
    quantity,
    idempotency_key: null,
    venue_order_id: `v-${id}`,
    attempts: 1,
    redispatches: 0,
    parked_at: null,
    rejection_reason: null,
    ...extra,
  };
}

function collected(orders: StoredOrder[], venue: Partial<Collected["venue"]> = {}): Collected {
  const placed = orders.filter((o) => o.status === "placed");
  return {
    orders,
    venue: {
      orders: placed.length,
      submissions: placed.length,
      duplicates: 0,
      failures: 0,
      failure_rate: 0,
      latency_ms: 0,
      outage: false,
      ...venue,
    },
    venueRecords: new Map(orders.map((o) => [o._id, o.status === "placed" ? o.venue_order_id : null])),
    deadLetters: 0,
    streamPending: 0,
  };
}

const options = { inFlightWindowMs: 8_000 };

/** The report bench/chaos.ts writes, around one analysis (no faults, drained). */
function reportOf(results: OpResult[], analysis: Analysis): ChaosReport {
  return {
    tool: "bench/chaos.ts",
    command: "test",
    ok: analysis.violations.length === 0,
    violations: analysis.violations,
    config: {},
    machine: {},
    startedAt: new Date(0).toISOString(),
    timings: { loadMs: 1, drainMs: 1, totalMs: 2, drained: true },
    requests: requestSummary(results),
    faults: faultSummary([]),
    drain: { drained: true, ms: 1, counts: {} },
    checks: analysis.checks,
    latency: latencyReport(results, []),
    samples: analysis.samples,
  };
}

describe("chaos checker", () => {
  test("the stored order of an unknown-outcome request without a key may be withdrawn, never left open", () => {
    const results = [op(0, "new-unkeyed", [fail(500)]), op(1, "new-unkeyed", [fail("conn-error")])];
    const withdrawn = analyze(
      results,
      collected([stored("w", 1, { status: "withdrawn", venue_order_id: null })]),
      options,
    );
    expect(withdrawn.violations).toEqual([]);
    expect(withdrawn.checks.unexpectedOrders).toMatchObject({
      unknownOutcomeStored: 1,
      unknownOutcomeWithdrawn: 1,
    });
    const open = analyze(
      results,
      collected([stored("w", 1, { status: "accepted", venue_order_id: null })]),
      options,
    );
    expect(open.violations.join("\n")).toContain("neither placed nor (without a key) withdrawn");
  });

  test("a clean run has no violation; a stored order of an unknown-outcome request is explained", () => {
    const results = [
      op(0, "new-keyed", [fail(500), ok("a", 100, true)]),
      op(1, "new-unkeyed", [fail(500)]),
      op(2, "same-key-retry", [ok("a", 200, true)], { key: "k0", ref: 0, quantity: 1 }),
      op(3, "reuse-different-body", [fail(422)], { key: "k0", ref: 0 }),
      op(4, "new-unkeyed", [fail("conn-error")]),
    ];
    const { checks, violations } = analyze(
      results,
      collected([stored("a", 1, { idempotency_key: "k0" }), stored("b", 2)]),
      options,
    );
    expect(violations).toEqual([]);
    expect(checks.unexpectedOrders).toEqual({
      total: 1,
      unknownOutcomeStored: 1,
      unknownOutcomeStoredPlaced: 1,
      unknownOutcomeWithdrawn: 0,
      unexplained: 0,
    });
    expect(checks.unknownOutcome).toMatchObject({ requests: 2, unkeyed: 2, stored: 1, notStored: 1 });
    expect(checks.idempotency).toMatchObject({
      replaysCorrect: 1,
      reuse422: 1,
      retriesAnsweredReplayedAfterFailure: 1,
    });
  });

  test("a lost, an unplaced and a doubly placed order are violations", () => {
    const results = [
      op(0, "new-keyed", [ok("a")]),
      op(1, "new-keyed", [ok("b")]),
      op(2, "new-keyed", [ok("c")]),
    ];
    const orders = [stored("b", 2, { status: "placing" }), stored("c", 3)];
    const { checks, violations } = analyze(results, collected(orders, { orders: 2 }), options);
    expect(checks.lost).toBe(1);
    expect(checks.notPlaced).toBe(1);
    expect(checks.venue.placedOnce).toBe(false);
    expect(violations.join("\n")).toContain("lost");
    expect(violations.join("\n")).toContain("not placed");
    expect(violations.join("\n")).toContain("venue holds 2 orders");
  });

  test("an order left accepted or placing after the drain is a violation, whoever asked for it", () => {
    // a: answered 201 and parked; b: stored by a request whose outcome the client did not learn.
    const results = [op(0, "new-keyed", [ok("a")]), op(1, "new-unkeyed", [fail(500)])];
    const orders = [
      stored("a", 1, { status: "accepted", venue_order_id: null, parked_at: new Date(0) }),
      stored("b", 2, { status: "placing", venue_order_id: null }),
    ];
    const { checks, violations, samples } = analyze(results, collected(orders), options);
    expect(checks.unfinished).toBe(2);
    expect(violations).toContain('2 orders left unfinished after the drain ({"accepted":1,"placing":1})');
    expect(samples.unfinished).toEqual([
      "a accepted attempts=1 parked=true",
      "b placing attempts=1 parked=false",
    ]);

    const clean = analyze(
      results,
      collected([stored("a", 1), stored("b", 2, { status: "rejected" })]),
      options,
    );
    expect(clean.checks.unfinished).toBe(0);
    expect(clean.violations.join("\n")).not.toContain("unfinished");
  });

  test("a resubmission the venue absorbed is reported, not a violation; an order placed twice is one", () => {
    const results = [op(0, "new-keyed", [ok("a")]), op(1, "new-keyed", [ok("b")])];
    const orders = [stored("a", 1), stored("b", 2)];
    // Seeded: order a was submitted three times; the venue recorded it once and absorbed two.
    const absorbed = analyze(results, collected(orders, { submissions: 4, duplicates: 2 }), options);
    expect(absorbed.violations).toEqual([]);
    expect(absorbed.checks.venue).toMatchObject({
      orders: 2,
      submissions: 4,
      duplicates: 2,
      placedOnce: true,
    });
    const text = summaryText(reportOf(results, absorbed));
    expect(text).toMatch(/venue duplicates absorbed \/ submissions\s+2 \/ 4\s+reported/);
    expect(text).toContain("RESULT: ok");

    // Seeded: the venue placed one order a second time (a new venue order for a known request).
    const twice = analyze(results, collected(orders, { orders: 3, submissions: 3 }), options);
    expect(twice.checks.venue.placedOnce).toBe(false);
    expect(twice.violations).toEqual(["venue holds 3 orders but MongoDB has 2 placed orders"]);
    expect(summaryText(reportOf(results, twice))).toContain("RESULT: 1 violation(s)");
  });

  test("MongoDB and the venue must agree on every order", () => {
    const results = [op(0, "new-keyed", [ok("a")]), op(1, "new-keyed", [ok("b")])];
    const data = collected([stored("a", 1), stored("b", 2)]);
    data.venueRecords.set("a", null);
    data.venueRecords.set("b", "another");
    const { checks, violations } = analyze(results, data, options);
    expect(checks.venue.placedUnknownAtVenue).toBe(1);
    expect(checks.venue.venueOrderIdMismatch).toBe(1);
    expect(violations).toHaveLength(2);
  });

  test("a wrong replay, a second order for a key and an accepted reuse are violations", () => {
    const results = [
      op(0, "new-keyed", [ok("a")]),
      op(1, "same-key-retry", [ok("x", 10, false)], { key: "k0", ref: 0, quantity: 1 }),
      op(2, "reuse-different-body", [ok("y")], { key: "k0", ref: 0 }),
    ];
    const orders = [
      stored("a", 1, { idempotency_key: "k0" }),
      stored("x", 1, { idempotency_key: "k0" }),
      stored("y", 3, { idempotency_key: "k0" }),
    ];
    const { checks, violations } = analyze(results, collected(orders), options);
    expect(checks.idempotency.replaysWrong).toBe(1);
    expect(checks.idempotency.reuseWrong).toBe(1);
    expect(checks.idempotency.keysWithSeveralOrders).toBe(1);
    expect(checks.idempotency.keysWithSeveralAnsweredIds).toBe(1);
    expect(violations.length).toBeGreaterThanOrEqual(4);
  });

  test("an order nobody asked for is unexplained; a 409 with nothing in flight is flagged", () => {
    const results = [op(0, "new-keyed", [ok("a")]), op(1, "new-keyed", [fail(409, 50_000), ok("b", 51_000)])];
    const { checks, violations } = analyze(
      results,
      collected([stored("a", 1), stored("b", 2), stored("ghost", 999)]),
      options,
    );
    expect(checks.unexpectedOrders.unexplained).toBe(1);
    expect(checks.idempotency.conflicts409Unexplained).toBe(1);
    expect(violations).toHaveLength(2);

    const explained = [op(0, "new-keyed", [fail(500, 1_000), fail(409, 2_000), ok("a", 9_000)])];
    expect(analyze(explained, collected([stored("a", 1)]), options).checks.idempotency).toMatchObject({
      conflicts409: 1,
      conflicts409Unexplained: 0,
    });
  });

  test("the drain ends on the second poll in a row with nothing open and the same total", () => {
    const first = drainPoll({ placed: 5, rejected: 1 }, -1);
    expect(first).toEqual({ drained: false, settledTotal: 6 });
    expect(drainPoll({ placed: 5, rejected: 1 }, first.settledTotal).drained).toBe(true);
    // A late order (a request the server was still finishing) restarts the count.
    expect(drainPoll({ placed: 6, rejected: 1 }, first.settledTotal)).toEqual({
      drained: false,
      settledTotal: 7,
    });
    // An open order is never drained, however stable the total.
    expect(drainPoll({ placed: 5, placing: 1 }, 6)).toEqual({ drained: false, settledTotal: -1 });
    expect(drainPoll({ placed: 5, accepted: 1 }, 6)).toEqual({ drained: false, settledTotal: -1 });
    expect(drainPoll({}, 0).drained).toBe(true);
  });

  test("status counts print open statuses first, then the rest", () => {
    expect(formatCounts({ rejected: 1, placed: 5, parked: 2, accepted: 3 })).toBe(
      "accepted=3 placed=5 rejected=1 parked=2",
    );
    expect(formatCounts({})).toBe("no orders");
    expect(formatCounts(null)).toBe("mongo unavailable");
  });

  test("latency is split by the fault active when an attempt started", () => {
    const results = [op(0, "new-keyed", [ok("a", 100), ok("b", 1_500), fail(500, 5_000)])];
    const report = latencyReport(results, [
      { kind: "venue-outage", target: "exchange", startMs: 1_000, endMs: 2_000, detail: {} },
    ]);
    expect(report.byPhase["no-fault"]?.count).toBe(2);
    expect(report.byPhase["no-fault"]?.errors).toBe(1);
    expect(report.byPhase["venue-outage"]?.count).toBe(1);
    expect(report.timeline[1]?.fault).toBe("venue-outage");
  });
});
