/**
 * The placement state's Lua scripts against a real Redis: dispatch adds one entry per untracked order,
 * a lease is exclusive and expires on the server's clock, a retry waits in the schedule until due and
 * returns with its attempt, a finished order is never dispatched again, and an operator's replay is.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createIoredisStreamPort } from "../../actors/runtime/redis-streams.ts";
import { orderFromEntry, RedisPlacementState } from "../../src/adapters/placement-state.ts";
import { createRedisClient } from "../../src/adapters/redis.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import type { DispatchedOrder } from "../../src/domain/ports.ts";
import { startRedis, type TestServer } from "../support/servers/servers.ts";
import { uniqueName, waitFor } from "../support/wait-for.ts";

let redis: TestServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

function setup(partitions = 1) {
  const client = createRedisClient(redis.url, { name: "placement-state-test" });
  const keys = createRedisKeys(uniqueName("ps"), partitions);
  const state = new RedisPlacementState(client, keys, 60_000);
  const port = createIoredisStreamPort(client);
  const order = (id: string, partition = 0): DispatchedOrder => ({
    _id: id,
    partition,
    type: "limit",
    side: "sell",
    instrument: "US0378331005",
    limit_price_cents: 18_999,
    quantity: 7,
  });
  const entries = async (partition = 0) => port.range(keys.placementStream(partition), "-", "+", 1_000);
  return { client, keys, state, order, entries };
}

test("dispatch adds an entry carrying the order once; a tracked order is not dispatched again", async () => {
  const { client, state, order, entries } = setup();
  try {
    expect(await state.dispatch(order("a"), "intake")).toBe("added");
    expect(await state.dispatch(order("a"), "sweep")).toBe("tracked");
    const [entry, ...rest] = await entries();
    expect(rest).toEqual([]);
    expect(orderFromEntry(entry!.fields!)).toEqual(order("a"));
    expect(entry!.fields).toMatchObject({ source: "intake", attempt: "1" });
  } finally {
    client.disconnect();
  }
});

test("a lease is exclusive, expires on the server's clock, and a finished order stays finished", async () => {
  const { client, state, order } = setup();
  try {
    expect(await state.acquire(order("b"), "t1", 300)).toBe("acquired");
    expect(await state.acquire(order("b"), "t2", 300)).toBe("held");
    await waitFor(async () => (await state.acquire(order("b"), "t3", 60_000)) === "acquired", {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    await state.finish(order("b"), "placed");
    expect(await state.acquire(order("b"), "t4", 60_000)).toBe("done");
    expect(await state.dispatch(order("b"), "sweep")).toBe("tracked");
  } finally {
    client.disconnect();
  }
});

test("a retry waits in the schedule until due, then returns to the stream with its attempt", async () => {
  const { client, state, order, entries } = setup();
  try {
    await state.acquire(order("c"), "t1", 60_000);
    // Another actor's token cannot schedule it.
    expect(await state.scheduleRetry(order("c"), "other", new Date(), 2)).toBe(false);
    const due = new Date(Date.now() + 400);
    expect(await state.scheduleRetry(order("c"), "t1", due, 2)).toBe(true);
    expect(await state.moveDueRetries(new Date())).toBe(0);
    expect(await state.dispatch(order("c"), "sweep")).toBe("tracked"); // tracked while waiting
    expect(await state.moveDueRetries(new Date(due.getTime() + 1))).toBe(1);
    const [entry] = await entries();
    expect(entry!.fields).toMatchObject({ order_id: "c", source: "retry", attempt: "2" });
    expect(await state.acquire(order("c"), "t2", 60_000)).toBe("acquired");
  } finally {
    client.disconnect();
  }
});

test("a released lease lets the next entry take the order; a replay dispatches a finished order again", async () => {
  const { client, state, order, entries } = setup();
  try {
    await state.acquire(order("d"), "t1", 60_000);
    await state.release(order("d"), "t1");
    expect(await state.acquire(order("d"), "t2", 60_000)).toBe("acquired");
    await state.finish(order("d"), "placed");
    expect(await state.dispatch(order("d"), "replay")).toBe("added");
    expect((await entries()).map((e) => e.fields?.source)).toEqual(["replay"]);
  } finally {
    client.disconnect();
  }
});

test("a partition past the current count maps modulo the count (PLACEMENT_PARTITIONS lowered)", async () => {
  const { client, state, order, entries } = setup(2);
  try {
    expect(await state.dispatch(order("e", 5), "sweep")).toBe("added");
    expect((await entries(1)).map((e) => e.fields?.order_id)).toEqual(["e"]);
  } finally {
    client.disconnect();
  }
});

test("a withdrawal's fence: no lease, no dispatch; not over a lease or a final outcome", async () => {
  const { client, state, order, entries } = setup();
  try {
    // Never dispatched (the API's 500 case): fenced before any entry exists.
    expect(await state.fenceForWithdrawal(order("w1"))).toBe("fenced");
    expect(await state.dispatch(order("w1"), "sweep")).toBe("withdrawn");
    expect(await state.acquire(order("w1"), "t", 60_000)).toBe("done");
    // Queued (the sweeper had dispatched it): the entry stays, but no actor can lease it.
    expect(await state.dispatch(order("w2"), "sweep")).toBe("added");
    expect(await state.fenceForWithdrawal(order("w2"))).toBe("fenced");
    expect(await state.acquire(order("w2"), "t", 60_000)).toBe("done");
    // Leased: an actor may be at the venue right now; the withdrawal must wait for its outcome.
    expect(await state.acquire(order("w3"), "t", 60_000)).toBe("acquired");
    expect(await state.fenceForWithdrawal(order("w3"))).toBe("held");
    await state.finish(order("w3"), "placed");
    expect(await state.fenceForWithdrawal(order("w3"))).toBe("placed");
    expect((await entries()).map((e) => e.fields?.order_id)).toEqual(["w2"]);
  } finally {
    client.disconnect();
  }
});
