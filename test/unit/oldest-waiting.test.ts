/**
 * The end-to-end monitor's look-up of the oldest waiting order (actors/placement/oldest-waiting.ts),
 * over an in-memory store answering its three queries as MongoDB would: when it reads everything, when
 * it walks the sweep buckets, and that the walk reports what a full look-up would.
 */
import { expect, test } from "bun:test";
import { createOldestWaitingLookup } from "../../actors/placement/oldest-waiting.ts";
import { SWEEP_BUCKET_MS, sweepBucketOf } from "../../src/domain/order.ts";

const T0 = Date.UTC(2026, 11, 4, 12, 0, 0);
const GRACE_MS = 10_000;

function world() {
  let nowMs = T0;
  const waiting = new Map<string, { created_at: Date; sweep_at: Date }>();
  const calls: string[] = [];
  const oldestUnfinished = createOldestWaitingLookup({
    clock: { now: () => new Date(nowMs) },
    graceMs: GRACE_MS,
    orders: {
      oldestUnfinished: async (statuses = ["accepted", "placing"]) => {
        calls.push(`full ${statuses.join(",")}`);
        if (!statuses.includes("accepted") || waiting.size === 0) return [];
        const oldest = [...waiting.values()].sort((a, b) => +a.created_at - +b.created_at)[0]!;
        return [{ status: "accepted", created_at: oldest.created_at }];
      },
      earliestWaitingSweepAt: async () => {
        calls.push("earliest due");
        return [...waiting.values()].sort((a, b) => +a.sweep_at - +b.sweep_at)[0]?.sweep_at ?? null;
      },
      oldestWaitingInBucket: async (bucket) => {
        calls.push("bucket");
        return (
          [...waiting.values()]
            .filter((o) => sweepBucketOf(o.sweep_at) === bucket)
            .sort((a, b) => +a.created_at - +b.created_at)[0]?.created_at ?? null
        );
      },
    },
  });
  return {
    /** An order stored `ageMs` ago, due DISPATCH_GRACE_MS after that (or `dueAtMs`). */
    store(id: string, ageMs: number, dueAtMs?: number) {
      const created = new Date(nowMs - ageMs);
      waiting.set(id, { created_at: created, sweep_at: new Date(dueAtMs ?? created.getTime() + GRACE_MS) });
    },
    get nowMs() {
      return nowMs;
    },
    finish(id: string) {
      waiting.delete(id);
    },
    advance(ms: number) {
      nowMs += ms;
    },
    async look() {
      calls.length = 0;
      const result = await oldestUnfinished();
      const accepted = result.find((r) => r.status === "accepted");
      return { ageMs: accepted ? nowMs - accepted.created_at.getTime() : null, calls: [...calls] };
    },
  };
}

test("first a full look-up; then a walk of the buckets that finds the same oldest order", async () => {
  const w = world();
  w.store("old", 120_000);
  w.store("new", 1_000);
  const first = await w.look();
  expect(first).toEqual({ ageMs: 120_000, calls: ["full accepted,placing", "earliest due"] });
  w.advance(15_000);
  const walk = await w.look();
  expect(walk.ageMs).toBe(135_000);
  expect(walk.calls).toEqual(["full placing", "bucket"]); // the lowest bucket holds it: one look-up
});

test("when the oldest is placed, the walk moves on to the next bucket holding one", async () => {
  const w = world();
  w.store("old", 120_000);
  w.store("mid", 60_000);
  w.store("new", 1_000);
  await w.look();
  w.finish("old");
  w.advance(15_000);
  expect((await w.look()).ageMs).toBe(75_000);
  w.finish("mid");
  w.advance(15_000);
  const walk = await w.look();
  expect(walk.ageMs).toBe(31_000);
  // From "mid"'s bucket up to "new"'s, one equality look-up per bucket, no full read.
  expect(walk.calls.filter((c) => c.startsWith("full accepted"))).toEqual([]);
  w.finish("new");
  w.advance(15_000);
  expect((await w.look()).ageMs).toBeNull();
});

test("a full look-up again every five minutes, and instead of a walk over five minutes of empty buckets", async () => {
  const w = world();
  w.store("ancient", 3_600_000);
  await w.look();
  w.finish("ancient");
  w.store("new", 1_000);
  w.advance(15_000);
  // From an hour ago to now is 3,600 buckets: after five minutes of empty ones, a full look-up instead.
  const instead = await w.look();
  expect(instead.calls.filter((c) => c === "bucket")).toHaveLength(301);
  expect(instead.calls.slice(-2)).toEqual(["full accepted,placing", "earliest due"]);
  expect(instead.ageMs).toBe(16_000);
  for (let t = 15_000; t < 300_000; t += 15_000) {
    w.advance(15_000);
    expect((await w.look()).calls[0]).toBe("full placing");
  }
  w.advance(15_000);
  expect((await w.look()).calls[0]).toBe("full accepted,placing");
});

test("an order marked due now by a clock a little behind (a failed dispatch) lies below the current bucket and is found", async () => {
  const w = world();
  await w.look();
  w.advance(15_000);
  expect((await w.look()).ageMs).toBeNull(); // nothing waiting
  // Its dispatch failed; the API's clock, 20 s behind, marked it due at once.
  w.store("dispatch-failed", 1_000, w.nowMs - 20_000);
  w.advance(SWEEP_BUCKET_MS);
  const walk = await w.look();
  expect(walk.ageMs).toBe(1_000 + SWEEP_BUCKET_MS);
  expect(walk.calls.filter((c) => c.startsWith("full accepted"))).toEqual([]);
});
