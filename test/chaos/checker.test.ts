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
  isPlaced,
  type StoredOrder,
} from "../../bench/chaos/analysis.ts";
import type { Attempt, OpKind, OpResult } from "../../bench/chaos/client.ts";
import type { AppliedFill, CollectedFills, VenueFillsByOrder } from "../../bench/chaos/fills.ts";
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

/** Read-outs of a run; by default the venue sent no execution report and the wait caught up. */
function collected(
  orders: StoredOrder[],
  venue: Partial<Collected["venue"]> = {},
  fills: Partial<CollectedFills> = {},
): Collected {
  const placed = orders.filter((o) => isPlaced(o.status));
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
    venueRecords: new Map(orders.map((o) => [o._id, isPlaced(o.status) ? o.venue_order_id : null])),
    deadLetters: 0,
    streamPending: 0,
    fills: {
      venue: {},
      applied: new Map(),
      wait: {
        caughtUp: true,
        ms: 1,
        openLeaves: 0,
        backlog: 0,
        reportsSent: 0,
        reportsStored: 0,
        deadLettered: 0,
      },
      ...fills,
    },
  };
}

type Fill = { venue: VenueFillsByOrder[string]; applied: Partial<AppliedFill> };

/**
 * Fills of stored orders that agree unless a case says otherwise: the venue traded `cum` shares (all
 * by default) and ended the order; this system applied the same, with the order's stored status.
 */
function fillsOf(orders: StoredOrder[], overrides: Record<string, Partial<Fill>> = {}) {
  const venue: VenueFillsByOrder = {};
  const applied = new Map<string, AppliedFill>();
  for (const order of orders) {
    const cum =
      order.status === "cancelled" || order.status === "expired" ? order.quantity >> 1 : order.quantity;
    const end = order.status === "cancelled" || order.status === "expired" ? order.status : "trade";
    venue[order._id] = { cum_qty: cum, leaves_qty: 0, exec_type_last: end, ...overrides[order._id]?.venue };
    applied.set(order._id, {
      executed: cum,
      summary: cum,
      flagged: 0,
      quantity: order.quantity,
      status: order.status,
      ...overrides[order._id]?.applied,
    });
  }
  return { venue, applied };
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

describe("chaos checker: fills", () => {
  const results = [
    op(0, "new-keyed", [ok("a")]),
    op(1, "new-keyed", [ok("b")]),
    op(2, "new-keyed", [ok("c")]),
  ];
  // a filled (its fill may even have come before the placement's acknowledgement was written),
  // b a limit order that traded half and was cancelled, c expired the same way.
  const orders = [
    stored("a", 10, { status: "filled" }),
    stored("b", 20, { status: "cancelled" }),
    stored("c", 31, { status: "expired" }),
  ];
  const agreeing = () => ({
    ...fillsOf(orders),
    wait: { ...collected([]).fills.wait, reportsSent: 7, reportsStored: 7 },
  });

  test("an order moved on by fills counts as placed, and agreeing fills pass", () => {
    const analysis = analyze(results, collected(orders, {}, agreeing()), options);
    expect(analysis.violations).toEqual([]);
    expect(analysis.checks).toMatchObject({ notPlaced: 0, placedOrders: 3, venue: { placedOnce: true } });
    expect(analysis.checks.fills).toMatchObject({
      orders: 3,
      venueShares: 10 + 10 + 15,
      appliedShares: 35,
      mismatched: 0,
      overfilled: 0,
      flagged: 0,
      wrongStatus: 0,
      agree: true,
    });
    const text = summaryText(reportOf(results, analysis));
    expect(text).toMatch(
      /execution reports stored \/ sent \(caught up, dead-lettered\)\s+7 \/ 7 \(yes in 0\.0 s, 0\)\s+ok/,
    );
    expect(text).toMatch(/fills: orders compared, shares venue == applied\s+3, 35 == 35\s+ok/);
    expect(text).toContain("RESULT: ok");
  });

  test("a filled order must still carry the venue's order id", () => {
    const data = collected(orders, {}, agreeing());
    data.venueRecords.set("a", "another");
    expect(analyze(results, data, options).violations).toEqual([
      "1 placed orders carry another venue order id than the venue's",
    ]);
  });

  test("applied shares short of the venue's, or a summary that lags them, are a mismatch", () => {
    const fills = fillsOf(orders, {
      a: { applied: { executed: 8, summary: 8 } },
      b: { applied: { summary: 9 } },
    });
    const analysis = analyze(results, collected(orders, {}, fills), options);
    expect(analysis.checks.fills).toMatchObject({ mismatched: 2, agree: false, appliedShares: 33 });
    expect(analysis.violations).toEqual(["2 orders' applied fills differ from the venue's (first: a, b)"]);
    expect(analysis.samples.fillsMismatched).toEqual([
      "a venue=10 executed=8 summary=8",
      "b venue=10 executed=10 summary=9",
    ]);
    expect(summaryText(reportOf(results, analysis))).toMatch(/orders mismatched\s+2 \(a, b\)\s+VIOLATION/);
  });

  test("an overfill is a violation", () => {
    const fills = fillsOf(orders, { a: { applied: { executed: 12, summary: 12 } } });
    const evidence = ["a filled quantity=10 filled=12 count=2: #1 trade 6 at ..., #5 trade 6 at ..."];
    const { checks, violations, samples } = analyze(
      results,
      collected(orders, {}, { ...fills, evidence }),
      options,
    );
    expect(checks.fills.overfilled).toBe(1);
    expect(violations).toContain("1 orders overfilled (first: a)");
    // The run's stores are deleted with it: the report keeps what the checker read of the order.
    expect(samples.fillsEvidence).toEqual(evidence);
  });

  test("a flagged execution is a violation, even with the shares right", () => {
    const fills = fillsOf(orders, { c: { applied: { flagged: 1 } } });
    const { checks, violations } = analyze(results, collected(orders, {}, fills), options);
    expect(checks.fills).toMatchObject({ flagged: 1, mismatched: 0, agree: false });
    expect(violations).toEqual(["1 execution reports flagged, not applied (first: c)"]);
  });

  test("an order the venue finished with the wrong end status is a violation", () => {
    const wrong = [
      stored("a", 10, { status: "partially_filled" }),
      orders[1] as StoredOrder,
      stored("c", 31, { status: "cancelled" }),
    ];
    const fills = fillsOf(wrong, { c: { venue: { cum_qty: 15, leaves_qty: 0, exec_type_last: "expired" } } });
    const { checks, violations } = analyze(results, collected(wrong, {}, fills), options);
    expect(checks.notPlaced).toBe(0);
    expect(checks.fills).toMatchObject({ wrongStatus: 2, firstIds: { wrongStatus: ["a", "c"] } });
    expect(violations).toEqual(["2 orders the venue finished carry another status (first: a, c)"]);
  });

  test("execution reports that did not catch up in time are a violation", () => {
    const wait = {
      caughtUp: false,
      ms: 120_000,
      openLeaves: 2,
      backlog: null,
      reportsSent: 9,
      reportsStored: null,
      deadLettered: 3,
    };
    const { checks, violations } = analyze(
      results,
      collected(orders, {}, { ...fillsOf(orders), wait }),
      options,
    );
    expect(checks.fills.agree).toBe(false);
    expect(violations).toEqual([
      "the execution reports did not catch up within 120 s: 2 orders open at the venue, stream backlog ?, ? of 9 reports stored, 3 dead-lettered",
    ]);
  });
});
