import type { Checks } from "./analysis.ts";
import type { DrainResult } from "./checker.ts";
import type { Attempt, OpResult } from "./client.ts";
import { FAULT_KINDS, type FaultKind, type FaultRecord } from "./faults.ts";
import type { FillChecks } from "./fills.ts";
import { formatTable, type LatencySummary, ms, summarize, tally } from "./stats.ts";

export type Phase = FaultKind | "no-fault" | "settling";

export interface TimelinePoint {
  /** Second since the load started. */
  t: number;
  count: number;
  p50: number | null;
  p99: number | null;
  errors: number;
  fault: FaultKind | null;
}

export interface LatencyReport {
  /** Each attempt belongs to the phase it started in; "settling" is the first seconds after a fault. */
  byPhase: Record<string, LatencySummary & { errors: number }>;
  /** p99 during venue outages / p99 with no fault. */
  venueOutageP99Ratio: number | null;
  timeline: TimelinePoint[];
}

const isError = (status: Attempt["status"]) => typeof status !== "number" || status >= 500;

interface Bucket {
  latencies: number[];
  errors: number;
}

function addAttempt<K>(buckets: Map<K, Bucket>, key: K, attempt: Attempt): void {
  const bucket = buckets.get(key) ?? { latencies: [], errors: 0 };
  bucket.latencies.push(attempt.latencyMs);
  if (isError(attempt.status)) bucket.errors += 1;
  buckets.set(key, bucket);
}

export function latencyReport(
  results: readonly OpResult[],
  faults: readonly FaultRecord[],
  settleMs = 2_000,
): LatencyReport {
  const phaseAt = (t: number): Phase => {
    for (const fault of faults) {
      if (t >= fault.startMs && t < fault.endMs) return fault.kind;
    }
    for (const fault of faults) {
      if (t >= fault.endMs && t < fault.endMs + settleMs) return "settling";
    }
    return "no-fault";
  };
  const phases = new Map<Phase, Bucket>();
  const seconds = new Map<number, Bucket>();
  for (const result of results) {
    for (const attempt of result.attempts) {
      addAttempt(phases, phaseAt(attempt.startMs), attempt);
      addAttempt(seconds, Math.floor(attempt.startMs / 1000), attempt);
    }
  }
  const byPhase: LatencyReport["byPhase"] = {};
  for (const [phase, bucket] of phases)
    byPhase[phase] = { ...summarize(bucket.latencies), errors: bucket.errors };
  const baseline = byPhase["no-fault"]?.p99 ?? null;
  const outage = byPhase["venue-outage"]?.p99 ?? null;
  const last = Math.max(0, ...seconds.keys());
  const timeline: TimelinePoint[] = [];
  for (let t = 0; t <= last; t++) {
    const slot = seconds.get(t) ?? { latencies: [], errors: 0 };
    const summary = summarize(slot.latencies);
    const phase = phaseAt(t * 1000 + 500);
    timeline.push({
      t,
      count: summary.count,
      p50: summary.p50,
      p99: summary.p99,
      errors: slot.errors,
      fault: phase === "no-fault" || phase === "settling" ? null : phase,
    });
  }
  return {
    byPhase,
    venueOutageP99Ratio: baseline && outage !== null ? Math.round((outage / baseline) * 100) / 100 : null,
    timeline,
  };
}

export interface ChaosReport {
  tool: "bench/chaos.ts";
  command: string;
  ok: boolean;
  violations: string[];
  config: Record<string, unknown>;
  machine: Record<string, unknown>;
  startedAt: string;
  timings: { loadMs: number; drainMs: number; totalMs: number; drained: boolean };
  requests: {
    operations: number;
    byKind: Record<string, number>;
    attempts: number;
    attemptsByStatus: Record<string, number>;
    outcomes: Record<string, number>;
  };
  faults: { total: number; byKind: Record<string, number>; failed: number; list: FaultRecord[] };
  drain: DrainResult;
  checks: Checks;
  latency: LatencyReport;
  samples: Record<string, string[]>;
}

export function requestSummary(results: readonly OpResult[]): ChaosReport["requests"] {
  const byKind: Record<string, number> = {};
  const attemptsByStatus: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  let attempts = 0;
  for (const result of results) {
    tally(byKind, result.op.kind);
    tally(outcomes, result.outcome);
    for (const attempt of result.attempts) {
      attempts += 1;
      tally(attemptsByStatus, String(attempt.status));
    }
  }
  return { operations: results.length, byKind, attempts, attemptsByStatus, outcomes };
}

export function faultSummary(faults: readonly FaultRecord[]): ChaosReport["faults"] {
  const byKind: Record<string, number> = {};
  for (const fault of faults) tally(byKind, fault.kind);
  return { total: faults.length, byKind, failed: faults.filter((f) => f.error).length, list: [...faults] };
}

const verdict = (ok: boolean) => (ok ? "ok" : "VIOLATION");

const withIds = (count: number, ids: readonly string[]) =>
  ids.length > 0 ? `${count} (${ids.join(", ")}${count > ids.length ? ", ..." : ""})` : String(count);

function fillRows(f: FillChecks): (string | number)[][] {
  return [
    [
      "execution reports stored / sent (caught up, dead-lettered)",
      `${f.reportsStored ?? "?"} / ${f.reportsSent} (${f.caughtUp ? "yes" : "NO"} in ${(f.waitMs / 1000).toFixed(1)} s, ${f.deadLettered ?? "?"})`,
      verdict(f.caughtUp),
    ],
    [
      "fills: orders compared, shares venue == applied",
      `${f.orders}, ${f.venueShares} == ${f.appliedShares}`,
      verdict(f.venueShares === f.appliedShares),
    ],
    ["  orders mismatched", withIds(f.mismatched, f.firstIds.mismatched), verdict(f.mismatched === 0)],
    ["  orders overfilled", withIds(f.overfilled, f.firstIds.overfilled), verdict(f.overfilled === 0)],
    ["  executions flagged (their orders)", withIds(f.flagged, f.firstIds.flagged), verdict(f.flagged === 0)],
    [
      "  finished orders, wrong status",
      withIds(f.wrongStatus, f.firstIds.wrongStatus),
      verdict(f.wrongStatus === 0),
    ],
  ];
}

export function summaryText(report: ChaosReport): string {
  const c = report.checks;
  const r = report.requests;
  const idem = c.idempotency;
  const rows: (string | number)[][] = [
    ["check", "value", "verdict"],
    ["operations / HTTP attempts", `${r.operations} / ${r.attempts}`, ""],
    [
      "attempts by status",
      Object.entries(r.attemptsByStatus)
        .map(([k, v]) => `${k}:${v}`)
        .join(" "),
      "",
    ],
    [
      "faults injected",
      `${report.faults.total} (${Object.entries(report.faults.byKind)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")})`,
      report.faults.failed > 0 ? `${report.faults.failed} failed` : "",
    ],
    [
      "backlog drained",
      `${report.timings.drained ? "yes" : "NO"} in ${(report.timings.drainMs / 1000).toFixed(1)} s`,
      verdict(report.timings.drained),
    ],
    ["ids answered 201", c.answeredIds, ""],
    ["lost (201 id not in MongoDB)", c.lost, verdict(c.lost === 0)],
    ["201 id not placed (fill statuses count as placed)", c.notPlaced, verdict(c.notPlaced === 0)],
    ["orders in MongoDB / placed", `${c.storedOrders} / ${c.placedOrders}`, ""],
    [
      "venue orders == placed ids (placed once)",
      `${c.venue.orders} == ${c.placedOrders}`,
      verdict(c.venue.placedOnce),
    ],
    [
      "MongoDB vs venue mismatches",
      c.venue.placedUnknownAtVenue + c.venue.venueOrderIdMismatch + c.venue.notPlacedButAtVenue,
      verdict(
        c.venue.placedUnknownAtVenue + c.venue.venueOrderIdMismatch + c.venue.notPlacedButAtVenue === 0,
      ),
    ],
    ["venue duplicates absorbed / submissions", `${c.venue.duplicates} / ${c.venue.submissions}`, "reported"],
    ...fillRows(c.fills),
    ["unexpected orders (stored, never 201)", c.unexpectedOrders.total, ""],
    [
      "  from unknown-outcome requests (placed / withdrawn)",
      `${c.unexpectedOrders.unknownOutcomeStored} (${c.unexpectedOrders.unknownOutcomeStoredPlaced} / ${c.unexpectedOrders.unknownOutcomeWithdrawn})`,
      verdict(
        c.unexpectedOrders.unknownOutcomeStored ===
          c.unexpectedOrders.unknownOutcomeStoredPlaced + c.unexpectedOrders.unknownOutcomeWithdrawn,
      ),
    ],
    ["  unexplained", c.unexpectedOrders.unexplained, verdict(c.unexpectedOrders.unexplained === 0)],
    [
      "unknown-outcome requests (keyed/unkeyed)",
      `${c.unknownOutcome.requests} (${c.unknownOutcome.keyed}/${c.unknownOutcome.unkeyed})`,
      "",
    ],
    [
      "  stored+placed (recovered) / not stored",
      `${c.unknownOutcome.stored} / ${c.unknownOutcome.notStored}`,
      "",
    ],
    ["retried after 5xx/timeout, answered as replay", idem.retriesAnsweredReplayedAfterFailure, ""],
    [
      "same-key retries: replayed same id",
      `${idem.replaysCorrect}/${idem.sameKeyRetries} (unverified ${idem.replaysUnverified})`,
      verdict(idem.replaysWrong === 0),
    ],
    [
      "different-body key reuse: 422",
      `${idem.reuse422}/${idem.differentBodyReuses} (unverified ${idem.reuseUnverified})`,
      verdict(idem.reuseWrong === 0),
    ],
    [
      "keys with >1 order / >1 answered id",
      `${idem.keysWithSeveralOrders} / ${idem.keysWithSeveralAnsweredIds}`,
      verdict(idem.keysWithSeveralOrders + idem.keysWithSeveralAnsweredIds === 0),
    ],
    [
      "409 answers (unexplained)",
      `${idem.conflicts409} (${idem.conflicts409Unexplained})`,
      verdict(idem.conflicts409Unexplained === 0),
    ],
    ["unexpected statuses", c.unexpectedStatuses, verdict(c.unexpectedStatuses === 0)],
    ["dead-letter entries / pending at end", `${c.deadLetters} / ${c.streamPending ?? "?"}`, ""],
  ];
  const latencyRows: (string | number | null)[][] = [
    ["phase", "attempts", "p50 ms", "p90 ms", "p99 ms", "max ms", "5xx/err"],
  ];
  // Venue outages next to the baseline: the ratio below compares the two.
  const order: Phase[] = [
    "no-fault",
    "venue-outage",
    ...FAULT_KINDS.filter((kind) => kind !== "venue-outage"),
    "settling",
  ];
  for (const phase of order) {
    const s = report.latency.byPhase[phase];
    if (s) latencyRows.push([phase, s.count, ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), s.errors]);
  }
  return [
    formatTable(rows),
    "",
    "POST /orders latency by phase (attempt start):",
    formatTable(latencyRows),
    `p99 during venue outage / p99 without faults: ${report.latency.venueOutageP99Ratio ?? "-"}`,
    "",
    report.ok
      ? "RESULT: ok (no violation)"
      : `RESULT: ${report.violations.length} violation(s):\n- ${report.violations.join("\n- ")}`,
  ].join("\n");
}
