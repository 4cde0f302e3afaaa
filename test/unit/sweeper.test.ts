/**
 * The sweeper's passes (actors/placement/sweeper.ts) over an in-memory store that answers both of its
 * queries as MongoDB would: which pass runs when, which orders each one reads, and that an order lost
 * by Redis is re-dispatched whichever pass reaches it. That the bucket look-up is index-backed on the
 * real store is test/integration/sweep-buckets.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { createSweeper } from "../../actors/placement/sweeper.ts";
import { SWEEP_BUCKET_MS, sweepBucketOf } from "../../src/domain/order.ts";
import type { DispatchCandidate, DispatchResult } from "../../src/domain/ports.ts";
import { silentLogger } from "../../src/logger.ts";

const T0 = Date.UTC(2026, 11, 4, 12, 0, 0);

interface StoredOrder extends DispatchCandidate {
  sweep_bucket: number | null;
  done: boolean;
}

function world(options: { batchSize?: number } = {}) {
  let nowMs = T0;
  const stored: StoredOrder[] = [];
  /** Orders Redis tracks (queued, leased, in the retry schedule): a dispatch of those adds nothing. */
  const tracked = new Set<string>();
  const dispatched: string[] = [];
  const queries: string[] = [];
  const passes: ("full" | "recent")[] = [];

  const due = (order: StoredOrder, now: Date, after: Date | undefined) =>
    !order.done &&
    order.sweep_at.getTime() <= now.getTime() &&
    (after === undefined || order.sweep_at.getTime() >= after.getTime());
  const page = (orders: StoredOrder[], limit: number) =>
    orders.sort((a, b) => a.sweep_at.getTime() - b.sweep_at.getTime()).slice(0, limit);

  const sweeper = createSweeper({
    orders: {
      findDueForDispatch: async (now, limit, { partition, after } = {}) => {
        queries.push("full");
        return page(
          stored.filter((o) => o.partition === partition && due(o, now, after)),
          limit,
        );
      },
      findDueInBucket: async (bucket, now, limit, { partition, after }) => {
        queries.push(`bucket ${bucket - sweepBucketOf(new Date(nowMs))}`);
        return page(
          stored.filter((o) => o.sweep_bucket === bucket && o.partition === partition && due(o, now, after)),
          limit,
        );
      },
      withdraw: async () => null,
    },
    dispatcher: {
      dispatch: async (order): Promise<DispatchResult> => {
        if (tracked.has(order._id)) return "tracked";
        tracked.add(order._id);
        dispatched.push(order._id);
        return "added";
      },
      fenceForWithdrawal: async () => "fenced",
    },
    clock: { now: () => new Date(nowMs) },
    logger: silentLogger,
    partitions: 1,
    holdLock: async () => true,
    batchSize: options.batchSize ?? 500,
    onPass: (kind) => passes.push(kind),
  });

  return {
    /** An order stored now (or `agoMs` ago) with the given due time; Redis tracks it unless `lost`. */
    store(id: string, sweepAtMs: number, options: { lost?: boolean; withoutBucket?: boolean } = {}) {
      const sweepAt = new Date(sweepAtMs);
      stored.push({
        _id: id,
        partition: 0,
        sweep_at: sweepAt,
        sweep_bucket: options.withoutBucket ? null : sweepBucketOf(sweepAt),
        type: "market",
        side: "buy",
        instrument: "US0378331005",
        limit_price_cents: null,
        quantity: 1,
        account: "acct",
        done: false,
      });
      if (!options.lost) tracked.add(id);
    },
    /** Redis forgets the order (a restart without persistence). */
    lose(id: string) {
      tracked.delete(id);
    },
    finish(id: string) {
      const order = stored.find((o) => o._id === id)!;
      order.done = true;
      order.sweep_bucket = null;
    },
    advance(ms: number) {
      nowMs += ms;
    },
    get nowMs() {
      return nowMs;
    },
    async pass() {
      queries.length = 0;
      passes.length = 0;
      dispatched.length = 0;
      await sweeper.sweepOnce();
      return { kind: passes[0], queries: [...queries], dispatched: [...dispatched] };
    },
  };
}

describe("the sweeper's passes", () => {
  test("the first pass is full; the next ones look only in the ten recent buckets, one look-up each", async () => {
    const w = world();
    expect((await w.pass()).kind).toBe("full");
    w.advance(1_000);
    const recent = await w.pass();
    expect(recent.kind).toBe("recent");
    expect(recent.queries).toEqual(Array.from({ length: 10 }, (_, i) => `bucket ${i - 9}`));
  });

  test("an order lost by Redis is re-dispatched by the next recent pass once due, and only once", async () => {
    const w = world();
    await w.pass();
    w.store("due-soon", w.nowMs + 3_000, { lost: true });
    w.store("not-due", w.nowMs + 600_000, { lost: true });
    w.advance(1_000);
    expect((await w.pass()).dispatched).toEqual([]);
    w.advance(3_000);
    const pass = await w.pass();
    expect(pass.kind).toBe("recent");
    expect(pass.dispatched).toEqual(["due-soon"]);
    w.advance(1_000);
    expect((await w.pass()).dispatched).toEqual([]); // tracked again: queued once
  });

  test("an order due long ago that Redis loses later is found by the next full pass, not before", async () => {
    const w = world();
    w.store("old", w.nowMs - 3_600_000); // due an hour ago, still on the stream
    w.store("unbucketed", w.nowMs - 60_000, { withoutBucket: true }); // stored before the buckets
    expect((await w.pass()).kind).toBe("full");
    w.lose("old");
    w.lose("unbucketed");
    for (let i = 0; i < 28; i++) {
      w.advance(1_000);
      const pass = await w.pass();
      expect(pass.kind).toBe("recent");
      expect(pass.dispatched).toEqual([]);
    }
    w.advance(2_000); // 30 s since the full pass
    const full = await w.pass();
    expect(full.kind).toBe("full");
    expect(full.dispatched.sort()).toEqual(["old", "unbucketed"]);
  });

  test("after a gap longer than the recent buckets reach (breaker open, lock taken over), the pass is full", async () => {
    const w = world();
    await w.pass();
    w.advance(1_000);
    expect((await w.pass()).kind).toBe("recent");
    w.store("due-in-the-gap", w.nowMs + 1_000, { lost: true });
    w.advance(11 * SWEEP_BUCKET_MS); // the due time is now before the first recent bucket
    const pass = await w.pass();
    expect(pass.kind).toBe("full");
    expect(pass.dispatched).toEqual(["due-in-the-gap"]);
  });

  test("more due orders in the recent buckets than a page: the next passes continue where the last stopped", async () => {
    const w = world({ batchSize: 4 });
    await w.pass();
    for (let i = 0; i < 10; i++) w.store(`o${i}`, w.nowMs + 500 + i * 100, { lost: true });
    w.advance(2_000);
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const pass = await w.pass();
      expect(pass.kind).toBe("recent");
      for (const id of pass.dispatched) seen.add(id);
    }
    expect([...seen].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `o${i}`).sort());
  });

  test("a full pass that re-dispatches a full page is followed by another full pass at once", async () => {
    const w = world({ batchSize: 4 });
    for (let i = 0; i < 10; i++) w.store(`old${i}`, w.nowMs - 600_000 + i, { lost: true });
    const kinds: string[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const pass = await w.pass();
      kinds.push(pass.kind!);
      for (const id of pass.dispatched) seen.add(id);
      w.advance(1_000);
    }
    // Pages of four (each from the last one's due time on, so one overlaps) until a short page; then
    // the passes are recent again.
    expect(kinds).toEqual(["full", "full", "full", "full", "recent"]);
    expect(seen.size).toBe(10);
  });

  test("a finished order leaves its bucket: a recent pass does not read it", async () => {
    const w = world();
    await w.pass();
    w.store("placed", w.nowMs + 500, { lost: true });
    w.finish("placed");
    w.advance(1_000);
    expect((await w.pass()).dispatched).toEqual([]);
  });
});
