/** The withdrawal's steps and their order, with stores that record each call (no servers). */
import { describe, expect, test } from "bun:test";
import { newOrderRecord, type OrderRecord, type OrderStatus } from "../../src/domain/order.ts";
import type { WithdrawalFence } from "../../src/domain/ports.ts";
import { createWithdrawals } from "../../src/orders/withdrawal.ts";

const created = new Date("2026-12-02T10:00:00Z");
const order: OrderRecord = newOrderRecord(
  "0190f0c0-0000-7000-8000-000000000001",
  { type: "market", side: "buy", instrument: "US0378331005", limitPriceCents: null, quantity: 1 },
  created,
  { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "acme" },
);

/** Fences answer from `fences` in turn (an Error is thrown); MongoDB answers `stored`. */
function setup(
  fences: (WithdrawalFence | Error)[],
  options: { now?: Date; stored?: OrderStatus | null } = {},
) {
  const calls: string[] = [];
  const finished: string[] = [];
  const withdrawals = createWithdrawals({
    clock: { now: () => options.now ?? created },
    backoff: { baseMs: 1, maxMs: 2 },
    dispatcher: {
      async fenceForWithdrawal() {
        const next = fences.shift() ?? new Error("no more fence answers");
        calls.push(`fence:${next instanceof Error ? "error" : next}`);
        if (next instanceof Error) throw next;
        return next;
      },
    },
    orders: {
      async withdraw(id, _now, tombstone) {
        calls.push(`mongo:${id === order._id && tombstone === order ? "with-tombstone" : "?"}`);
        return options.stored === undefined ? "withdrawn" : options.stored;
      },
    },
    hooks: { onFinished: (_id, result) => finished.push(result) },
  });
  return { withdrawals, calls, finished };
}

describe("withdrawal of an order answered 500 without an Idempotency-Key", () => {
  test("Redis fence first, then MongoDB (with the order as the tombstone to insert)", async () => {
    const { withdrawals, calls, finished } = setup(["fenced"]);
    await withdrawals.withdraw(order);
    expect(calls).toEqual(["fence:fenced", "mongo:with-tombstone"]);
    expect(finished).toEqual(["withdrawn"]);
  });

  test("an actor holding the lease: wait for its outcome; placed is the order's fate, MongoDB untouched", async () => {
    const { withdrawals, calls, finished } = setup(["held", "held", "placed"]);
    await withdrawals.withdraw(order);
    expect(calls).toEqual(["fence:held", "fence:held", "fence:placed"]);
    expect(finished).toEqual(["placed"]);
  });

  test("Redis down inside the dispatch grace: MongoDB alone (nothing may dispatch the order yet)", async () => {
    const { withdrawals, calls, finished } = setup([new Error("redis down")], {
      now: new Date(created.getTime() + 1_000),
    });
    await withdrawals.withdraw(order);
    expect(calls).toEqual(["fence:error", "mongo:with-tombstone"]);
    expect(finished).toEqual(["withdrawn"]);
  });

  test("Redis down past the grace: no MongoDB step until the fence holds (the sweeper may dispatch)", async () => {
    const { withdrawals, calls } = setup([new Error("redis down"), new Error("redis down"), "fenced"], {
      now: new Date(created.getTime() + 60_000),
    });
    await withdrawals.withdraw(order);
    expect(calls).toEqual(["fence:error", "fence:error", "fence:fenced", "mongo:with-tombstone"]);
  });

  test("MongoDB says the order is already final: that status is the result", async () => {
    const { withdrawals, finished } = setup(["fenced"], { stored: "rejected" });
    await withdrawals.withdraw(order);
    expect(finished).toEqual(["rejected"]);
  });

  test("one withdrawal per order at a time; close() stops the retries", async () => {
    const { withdrawals, calls } = setup(["held", "held", "held", "held", "held", "held"]);
    const first = withdrawals.withdraw(order);
    const second = withdrawals.withdraw(order);
    expect(withdrawals.pending).toBe(1);
    withdrawals.close();
    await Promise.all([first, second]);
    expect(withdrawals.pending).toBe(0);
    expect(calls.length).toBeLessThan(6);
  });
});
