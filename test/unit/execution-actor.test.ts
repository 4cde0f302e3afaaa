/**
 * The execution behaviour when a batch fails, over an in-memory store: a report the store keeps
 * refusing while it takes probe writes is given back (left pending) and the rest of its batch is
 * acknowledged; a refusal that fails the whole batch is found by applying one report at a time; while
 * the store takes no probe write (down), a refused report is retried in place and never given back; an
 * outage is retried in place however long it lasts. The real store's refusal is
 * test/integration/executions-refused.test.ts's.
 */
import { describe, expect, test } from "bun:test";
import {
  createExecutionBehaviour,
  type ExecutionDeps,
  ReportRefusedError,
} from "../../actors/executions/execution-actor.ts";
import type { ExecutionBatchResult, ReportResult } from "../../src/adapters/mongo/execution-store.ts";
import type { ExecutionReport } from "../../src/domain/execution.ts";
import { silentLogger } from "../../src/logger.ts";

class Refusal extends Error {}

function report(orderId: string): ExecutionReport {
  return {
    exec_id: `exec-${orderId}`,
    session: "s1",
    seq: 1,
    client_order_id: orderId,
    venue_order_id: `venue-${orderId}`,
    exec_type: "trade",
    last_qty: 1,
    last_price_cents: 100,
    cum_qty: 1,
    leaves_qty: 0,
    transact_time: new Date().toISOString(),
  };
}

/** An in-memory store: `refuse` and `fail` decide each call's answer; every call is recorded. */
function fakeStore(rules: {
  /** The store refuses this order's report (per report, or the whole batch when `wholeBatch`). */
  refuse?: (orderId: string) => boolean;
  wholeBatch?: boolean;
  /** The call fails as an outage would (the whole batch). */
  fail?: (call: number) => boolean;
  /** The probe write fails (the store takes no writes). */
  probeFails?: () => boolean;
}) {
  const calls: string[][] = [];
  const applied: string[] = [];
  let probes = 0;
  const store: ExecutionDeps["store"] = {
    async apply(reports): Promise<ExecutionBatchResult> {
      const ids = reports.map((r) => r.client_order_id);
      calls.push(ids);
      if (rules.fail?.(calls.length)) throw new Error("connection refused");
      const refused = ids.map((id) => rules.refuse?.(id) ?? false);
      if (rules.wholeBatch && refused.some(Boolean)) throw new Refusal("the whole insert was refused");
      const results: (ReportResult | Error)[] = ids.map((id, i) =>
        refused[i] ? new Refusal(`refused ${id}`) : "applied",
      );
      ids.forEach((id, i) => {
        if (!refused[i]) applied.push(id);
      });
      return { results, updates: [] };
    },
    async probeWrite() {
      probes += 1;
      if (rules.probeFails?.()) throw new Error("the store takes no writes");
    },
    isRefusal: (error) => error instanceof Refusal,
  };
  return {
    store,
    calls,
    applied,
    get probes() {
      return probes;
    },
  };
}

function behaviourOver(store: ExecutionDeps["store"]) {
  return createExecutionBehaviour({
    store,
    locks: {
      acquire: async (ids) => new Set(ids),
      release: async () => {},
    },
    clock: { now: () => new Date() },
    logger: silentLogger,
    batchMax: 64,
    publish: () => {},
  });
}

/** Hands the reports to the behaviour at once (one batch); each settles as "ok" or its error. */
async function handleAll(
  behaviour: ReturnType<typeof createExecutionBehaviour>,
  orderIds: string[],
): Promise<Record<string, "ok" | Error>> {
  const signal = new AbortController().signal;
  const outcomes = await Promise.all(
    orderIds.map((id, i) =>
      behaviour
        .handle(
          { stream: "executions", id: `${i}-0`, fields: { report: JSON.stringify(report(id)) } },
          signal,
        )
        .then(
          () => "ok" as const,
          (error: Error) => error,
        ),
    ),
  );
  return Object.fromEntries(orderIds.map((id, i) => [id, outcomes[i] as "ok" | Error]));
}

describe("execution behaviour: failures of a batch", () => {
  test("a report the store refuses while it takes probe writes is given back after 3 tries; the rest of its batch is acknowledged", async () => {
    const fake = fakeStore({ refuse: (id) => id === "bad" });
    const outcomes = await handleAll(behaviourOver(fake.store), ["a", "bad", "b"]);
    expect(outcomes.a).toBe("ok");
    expect(outcomes.b).toBe("ok");
    expect(outcomes.bad).toBeInstanceOf(ReportRefusedError);
    expect((outcomes.bad as ReportRefusedError).code).toBe("REPORT_REFUSED");
    expect((outcomes.bad as Error).message).toContain("refused bad");
    expect(fake.calls.filter((ids) => ids.includes("bad"))).toHaveLength(3);
    expect(fake.applied.sort()).toEqual(["a", "b"]);
    expect(fake.probes).toBe(3);
  });

  test("a refusal that fails the whole batch: the reports are applied one at a time, and only the refused one is given back", async () => {
    const fake = fakeStore({ refuse: (id) => id === "bad", wholeBatch: true });
    const outcomes = await handleAll(behaviourOver(fake.store), ["a", "b", "bad", "c"]);
    expect(outcomes).toMatchObject({ a: "ok", b: "ok", c: "ok" });
    expect(outcomes.bad).toBeInstanceOf(ReportRefusedError);
    expect(fake.calls[0]).toEqual(["a", "b", "bad", "c"]);
    // Then one at a time: every report once, and the refused one until it is given back.
    expect(fake.calls.slice(1).every((ids) => ids.length === 1)).toBe(true);
    expect(fake.applied.sort()).toEqual(["a", "b", "c"]);
    expect(fake.calls.filter((ids) => ids.includes("bad"))).toHaveLength(4);
  });

  test("while the store takes no probe write, a refused report is retried in place and applied once the store is back", async () => {
    let down = true;
    const fake = fakeStore({ refuse: (id) => id === "bad" && down, probeFails: () => down });
    const behaviour = behaviourOver(fake.store);
    const settled = handleAll(behaviour, ["a", "bad"]);
    while (fake.probes < 5) await Bun.sleep(10);
    down = false;
    const outcomes = await settled;
    expect(outcomes).toEqual({ a: "ok", bad: "ok" });
    expect(fake.calls.filter((ids) => ids.includes("bad")).length).toBeGreaterThan(5);
    expect(fake.applied.sort()).toEqual(["a", "bad"]);
  });

  test("an outage that fails every batch is retried in place, with no probe and nothing given back", async () => {
    const fake = fakeStore({ fail: (call) => call <= 4 });
    const outcomes = await handleAll(behaviourOver(fake.store), ["a", "b"]);
    expect(outcomes).toEqual({ a: "ok", b: "ok" });
    expect(fake.calls).toHaveLength(5);
    expect(fake.probes).toBe(0);
  });
});
