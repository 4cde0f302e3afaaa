/**
 * The placement actor's pure parts: the breaker's gate (closed, open, one half-open trial however long
 * the lease before it takes), the outcomes of one message, and the trim boundary math. Doubles
 * stand in for MongoDB and the venue; they fail loudly on anything they do not implement.
 */
import { describe, expect, test } from "bun:test";
import { ExchangeBreaker } from "../../actors/placement/exchange-breaker.ts";
import {
  createPlacementBehaviour,
  LeaseUnavailableError,
  type PlacementOutcome,
} from "../../actors/placement/placement-actor.ts";
import type { GroupState, StreamPort } from "../../actors/runtime/redis-streams.ts";
import { compareIds, createStreamUpkeep } from "../../actors/runtime/stream-upkeep.ts";
import { entryFields } from "../../src/adapters/placement-state.ts";
import { OrderPlacementError, OrderRejectedByVenueError } from "../../src/domain/errors.ts";
import { newOrderRecord, type OrderRecord } from "../../src/domain/order.ts";
import type { FinalWriteResult, OrderRepository, PlacementLeases } from "../../src/domain/ports.ts";
import type { Exchange, ExchangeOrder, VenueAck } from "../../src/exchange/port.ts";
import { silentLogger } from "../../src/logger.ts";
import { waitFor } from "../support/wait-for.ts";

function strict<T extends object>(name: string, implemented: Partial<T>): T {
  return new Proxy(implemented, {
    get(target, property) {
      if (property in target) return target[property as keyof typeof target];
      if (property === "then") return undefined;
      throw new Error(`${name}.${String(property)} is not implemented by this double`);
    },
  }) as T;
}

function order(id: string, overrides: Partial<OrderRecord> = {}): OrderRecord {
  return {
    ...newOrderRecord(
      id,
      { type: "market", side: "buy", instrument: "US0378331005", limitPriceCents: null, quantity: 3 },
      new Date(0),
      { partitions: 1, dispatchGraceMs: 1_000, idempotencyKey: null, account: "test" },
    ),
    ...overrides,
  };
}

/** A venue double whose answers the test scripts one by one. */
function scriptedVenue() {
  const submitted: string[] = [];
  const looked: string[] = [];
  let next: () => Promise<VenueAck> = async () => ({ venue_order_id: "v", duplicate: false });
  const exchange: Exchange = {
    placeOrder: (o: ExchangeOrder) => {
      submitted.push(o.client_order_id);
      return next();
    },
    lookup: async (id: string) => {
      looked.push(id);
      return null;
    },
  };
  return {
    exchange,
    submitted,
    looked,
    answer(fn: () => Promise<VenueAck>) {
      next = fn;
    },
  };
}

const breakerOptions = {
  timeoutMs: 1_000,
  errorThresholdPercent: 50,
  volumeThreshold: 2,
  resetTimeoutMs: 60,
};

describe("ExchangeBreaker gate", () => {
  test("closed: unlimited; open after transport failures: 0; half-open: one trial", async () => {
    const venue = scriptedVenue();
    const breaker = new ExchangeBreaker(venue.exchange, breakerOptions);
    expect(breaker.capacity()).toBe(Number.POSITIVE_INFINITY);
    venue.answer(async () => {
      throw new OrderPlacementError();
    });
    const signal = new AbortController().signal;
    for (const id of ["a", "b", "c"])
      await breaker.place({ client_order_id: id } as ExchangeOrder, signal).catch(() => {});
    expect(breaker.state).toBe("open");
    expect(breaker.capacity()).toBe(0);
    await waitFor(() => breaker.state === "half-open", { timeoutMs: 2_000, intervalMs: 5 });
    expect(breaker.capacity()).toBe(1);
    let finish: (ack: VenueAck) => void = () => {};
    venue.answer(() => new Promise<VenueAck>((resolve) => (finish = resolve)));
    const trial = breaker.place({ client_order_id: "t" } as ExchangeOrder, signal);
    expect(breaker.capacity()).toBe(0);
    finish({ venue_order_id: "v", duplicate: false });
    await trial;
    expect(breaker.state).toBe("closed");
    breaker.shutdown();
  });

  test("a venue rejection is not a breaker failure", async () => {
    const venue = scriptedVenue();
    const breaker = new ExchangeBreaker(venue.exchange, breakerOptions);
    venue.answer(async () => {
      throw new OrderRejectedByVenueError("instrument unknown");
    });
    const signal = new AbortController().signal;
    for (const id of ["a", "b", "c", "d"]) {
      await breaker.place({ client_order_id: id } as ExchangeOrder, signal).catch(() => {});
    }
    expect(breaker.state).toBe("closed");
    breaker.shutdown();
  });

  test("a call started after shutdown aborted stops at once", async () => {
    const venue = scriptedVenue();
    venue.answer(() => new Promise<VenueAck>(() => {}));
    const breaker = new ExchangeBreaker(venue.exchange, { ...breakerOptions, timeoutMs: 60_000 });
    const shutdown = new AbortController();
    shutdown.abort(new Error("shutting down"));
    await expect(breaker.place({ client_order_id: "x" } as ExchangeOrder, shutdown.signal)).rejects.toThrow(
      "shutting down",
    );
    breaker.shutdown();
  });
});

function pairs(flat: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
  return fields;
}

/**
 * The lease semantics of RedisPlacementState's Lua scripts, in memory (the real scripts run against
 * Redis in test/integration/placement-state.test.ts).
 */
function memoryLeases(acquireDelay?: Promise<void>) {
  const states = new Map<string, string>();
  const retries: { id: string; attempt: number }[] = [];
  const leases: PlacementLeases = {
    async acquire(order, token) {
      await acquireDelay;
      const state = states.get(order._id);
      if (state?.startsWith("done:")) return "done";
      if (state?.startsWith("lease:")) return "held";
      states.set(order._id, `lease:${token}`);
      return "acquired";
    },
    async finish(order, outcome) {
      states.set(order._id, `done:${outcome}`);
    },
    async scheduleRetry(order, token, _dueAt, attempt) {
      const state = states.get(order._id);
      if (state && state !== `lease:${token}`) return false;
      states.set(order._id, "retry");
      retries.push({ id: order._id, attempt });
      return true;
    },
    async release(order, token) {
      if (states.get(order._id) === `lease:${token}`) states.set(order._id, "queued");
    },
  };
  return { leases, states, retries };
}

describe("placement behaviour", () => {
  function setup(
    stored: OrderRecord | null,
    options: {
      acquireDelay?: Promise<void>;
      clock?: { now(): Date };
      finalResult?: FinalWriteResult;
      maxAttempts?: number;
      maxAgeMs?: number;
      venueSlots?: number;
      /** The final write waits for it (a slow store). */
      finalWriteDelay?: Promise<void>;
    } = {},
  ) {
    const venue = scriptedVenue();
    const breaker = new ExchangeBreaker(venue.exchange, breakerOptions);
    const calls: string[] = [];
    const outcomes: PlacementOutcome[] = [];
    const deadLetters: Record<string, string>[] = [];
    const mismatches: string[] = [];
    const { leases, states, retries } = memoryLeases(options.acquireDelay);
    const orders = strict<OrderRepository>("orders", {
      findById: async () => {
        calls.push("read");
        return stored;
      },
      markPlaced: async (_id, venueOrderId, _now, attempts) => {
        await options.finalWriteDelay;
        calls.push(`placed ${venueOrderId} after ${attempts}`);
        return options.finalResult ?? "applied";
      },
      markRejected: async (_id, reason) => {
        calls.push(`rejected: ${reason}`);
        return "applied";
      },
      park: async (_id, reason) => void calls.push(`parked: ${reason}`),
    });
    const behaviour = createPlacementBehaviour({
      orders,
      leases,
      exchange: venue.exchange,
      breaker,
      clock: options.clock ?? { now: () => new Date() },
      logger: silentLogger,
      leaseMs: 1_000,
      retry: { baseMs: 10, maxMs: 100 },
      ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
      ...(options.maxAgeMs === undefined ? {} : { maxAgeMs: options.maxAgeMs }),
      ...(options.venueSlots === undefined ? {} : { venueSlots: options.venueSlots }),
      deadLetter: async (fields) => void deadLetters.push(fields),
      observe: (outcome) => outcomes.push(outcome),
      onFinalWriteMismatch: (id, result) => mismatches.push(`${id}: ${result}`),
    });
    return { venue, breaker, behaviour, calls, outcomes, deadLetters, states, retries, mismatches };
  }
  /** An entry as the API writes it: the order travels on it. */
  const message = (orderId: string, fields: Record<string, string> = {}, id = "1-0") => ({
    stream: "s",
    id,
    fields: {
      ...pairs(entryFields({ ...order(orderId), _id: orderId }, "intake", 1)),
      ...fields,
    },
  });
  const signal = new AbortController().signal;

  test("a first attempt reads nothing, is submitted without a look-up, then written once and marked done", async () => {
    const { behaviour, venue, calls, outcomes, states, breaker } = setup(null);
    await behaviour.handle(message("o1"), signal);
    expect(venue.looked).toEqual([]);
    expect(venue.submitted).toEqual(["o1"]);
    expect(calls).toEqual(["placed v after 1"]);
    expect(outcomes).toEqual(["placed"]);
    expect(states.get("o1")).toBe("done:placed");
    breaker.shutdown();
  });

  test("a retry, a re-dispatch or a reclaimed entry is looked up at the venue before resubmitting", async () => {
    for (const [id, fields, redelivered] of [
      ["o2", { attempt: "2", source: "retry" }, false],
      ["o3", { source: "sweep" }, false],
      ["o4", {}, true],
    ] as const) {
      const { behaviour, venue, breaker } = setup(null);
      await behaviour.handle({ ...message(id, fields), redelivered }, signal);
      expect({ id, looked: venue.looked }).toEqual({ id, looked: [id] });
      breaker.shutdown();
    }
  });

  test("Redis failing while the lease is taken leaves the entry pending (reclaimed soon), nothing else done", async () => {
    const { behaviour, venue, calls, outcomes, states, breaker } = setup(null);
    const failingLeases = { ...memoryLeases().leases };
    failingLeases.acquire = async () => {
      throw new Error("Connection is closed.");
    };
    const unleased = createPlacementBehaviour({
      orders: strict<OrderRepository>("orders", {}),
      leases: failingLeases,
      exchange: venue.exchange,
      breaker,
      clock: { now: () => new Date() },
      logger: silentLogger,
      leaseMs: 1_000,
      retry: { baseMs: 10, maxMs: 100 },
      deadLetter: async () => {
        throw new Error("nothing is dead-lettered");
      },
    });
    // Rejected: the runtime leaves the entry pending, and its reclaimer delivers it again.
    await expect(unleased.handle(message("o20"), signal)).rejects.toBeInstanceOf(LeaseUnavailableError);
    expect(venue.submitted).toEqual([]);
    // The next delivery, with Redis back, places it.
    await behaviour.handle({ ...message("o20"), redelivered: true }, signal);
    expect(venue.submitted).toEqual(["o20"]);
    expect(calls).toEqual(["placed v after 1"]);
    expect(outcomes).toEqual(["placed"]);
    expect(states.get("o20")).toBe("done:placed");
    breaker.shutdown();
  });

  test("a transport failure goes to the retry schedule with the next attempt, no MongoDB write", async () => {
    const failing = setup(null);
    failing.venue.answer(async () => {
      throw new OrderPlacementError();
    });
    await failing.behaviour.handle(message("o5", { attempt: "3", source: "retry" }), signal);
    expect(failing.calls).toEqual([]);
    expect(failing.retries).toEqual([{ id: "o5", attempt: 4 }]);
    expect(failing.states.get("o5")).toBe("retry");
    expect(failing.outcomes).toEqual(["retry"]);
    failing.breaker.shutdown();
  });

  test("a venue rejection is final, written once with its reason, and not a dead letter", async () => {
    const rejecting = setup(null);
    rejecting.venue.answer(async () => {
      throw new OrderRejectedByVenueError("instrument unknown");
    });
    await rejecting.behaviour.handle(message("o6"), signal);
    expect(rejecting.calls).toEqual(["rejected: order rejected by the venue: instrument unknown"]);
    expect(rejecting.deadLetters).toEqual([]);
    expect(rejecting.outcomes).toEqual(["rejected"]);
    expect(rejecting.states.get("o6")).toBe("done:rejected");
    rejecting.breaker.shutdown();
  });

  test("maxAttempts: a transport failure on the last allowed attempt parks the order instead of retrying", async () => {
    const failing = setup(null, { maxAttempts: 3 });
    failing.venue.answer(async () => {
      throw new OrderPlacementError("venue unreachable");
    });
    await failing.behaviour.handle(message("o12", { attempt: "2", source: "retry" }), signal);
    expect(failing.retries).toEqual([{ id: "o12", attempt: 3 }]);
    expect(failing.calls).toEqual([]);

    await failing.behaviour.handle(message("o13", { attempt: "3", source: "retry" }), signal);
    expect(failing.retries).toEqual([{ id: "o12", attempt: 3 }]);
    expect(failing.calls).toEqual(["parked: gave up after 3 attempts: venue unreachable"]);
    expect(failing.states.get("o13")).toBe("done:parked");
    expect(failing.outcomes).toEqual(["retry", "parked"]);
    expect(failing.deadLetters).toEqual([]);
    failing.breaker.shutdown();

    // Unset: unlimited, as before.
    const unlimited = setup(null);
    unlimited.venue.answer(async () => {
      throw new OrderPlacementError("venue unreachable");
    });
    await unlimited.behaviour.handle(message("o14", { attempt: "1000", source: "retry" }), signal);
    expect(unlimited.retries).toEqual([{ id: "o14", attempt: 1001 }]);
    unlimited.breaker.shutdown();
  });

  test("the breaker refusing before any venue call defers the order: no attempt spent, never parked for it", async () => {
    const { behaviour, breaker, venue, retries, outcomes, calls } = setup(null, { maxAttempts: 3 });
    venue.answer(async () => {
      throw new OrderPlacementError("venue unreachable");
    });
    // Open the breaker (volumeThreshold 2, 50%): two failed attempts.
    await behaviour.handle(message("b1"), signal);
    await behaviour.handle(message("b2"), signal);
    expect(breaker.state).toBe("open");
    expect(outcomes).toEqual(["retry", "retry"]);

    // Taken while open (the gate says 0, but a read or a reclaim decided before it closed): the
    // breaker refuses, the venue is not called, and the attempt number stays; on the last allowed
    // attempt it is not parked either.
    const submittedBefore = venue.submitted.length;
    await behaviour.handle(message("b3", { attempt: "3", source: "retry" }), signal);
    expect(venue.submitted.length).toBe(submittedBefore);
    expect(outcomes.at(-1)).toBe("deferred");
    expect(retries.at(-1)).toEqual({ id: "b3", attempt: 3 });
    expect(calls).toEqual([]);
    breaker.shutdown();
  });

  test("maxAgeMs: a transport failure past the order's age limit (from its UUIDv7 id) parks it", async () => {
    const now = new Date("2026-12-02T12:00:00Z");
    const idAt = (ms: number) =>
      `${ms
        .toString(16)
        .padStart(12, "0")
        .replace(/^(.{8})(.{4})$/, "$1-$2")}-7000-8000-000000000000`;
    const failing = setup(null, { maxAgeMs: 3_600_000, clock: { now: () => now } });
    failing.venue.answer(async () => {
      throw new OrderPlacementError("venue unreachable");
    });
    const young = idAt(now.getTime() - 60_000);
    const old = idAt(now.getTime() - 3_600_000);
    await failing.behaviour.handle(message(young, { attempt: "5", source: "retry" }), signal);
    expect(failing.retries).toEqual([{ id: young, attempt: 6 }]);
    await failing.behaviour.handle(message(old, { attempt: "5", source: "retry" }), signal);
    expect(failing.calls).toEqual(["parked: gave up after 3600 s (5 attempts): venue unreachable"]);
    expect(failing.states.get(old)).toBe("done:parked");
    expect(failing.outcomes).toEqual(["retry", "parked"]);
    failing.breaker.shutdown();
  });

  test("two entries of one order at once: one lease, one submission, the other skipped", async () => {
    let release: () => void = () => {};
    const { behaviour, venue, outcomes, breaker } = setup(null, {
      acquireDelay: new Promise<void>((resolve) => (release = resolve)),
    });
    const both = Promise.all([
      behaviour.handle(message("o7", {}, "1-0"), signal),
      behaviour.handle(message("o7", { source: "sweep" }, "2-0"), signal),
    ]);
    release();
    await both;
    expect(venue.submitted).toEqual(["o7"]);
    expect(outcomes.sort()).toEqual(["placed", "skipped"]);
    // A third entry after the outcome is acknowledged without any work.
    await behaviour.handle(message("o7", { source: "sweep" }, "3-0"), signal);
    expect(venue.submitted).toEqual(["o7"]);
    breaker.shutdown();
  });

  test("an entry with only an id reads the order; one already final is skipped unsubmitted", async () => {
    const placed = setup(order("o8", { status: "placed" }));
    await placed.behaviour.handle({ stream: "s", id: "1-0", fields: { order_id: "o8" } }, signal);
    expect(placed.calls).toEqual(["read"]);
    expect(placed.venue.submitted).toEqual([]);
    expect(placed.states.get("o8")).toBe("done:placed");
    placed.breaker.shutdown();

    const unknown = setup(null);
    await unknown.behaviour.handle({ stream: "s", id: "1-0", fields: { order_id: "o9" } }, signal);
    expect(unknown.deadLetters).toEqual([
      { order_id: "o9", reason: "order not found in MongoDB", kind: "unknown_order" },
    ]);
    unknown.breaker.shutdown();
  });

  test("a final write that finds another outcome is counted", async () => {
    const { behaviour, mismatches, breaker } = setup(null, { finalResult: "conflict" });
    await behaviour.handle(message("o10"), signal);
    expect(mismatches).toEqual(["o10: conflict"]);
    breaker.shutdown();
  });

  test("a lease too old to submit (a paused process) hands the order back unsubmitted", async () => {
    // Paused while taking the lease for `pausedMs`, with a lease of 1,000 ms.
    for (const [pausedMs, submits] of [
      [999, true],
      [1_000, false],
      [5_000, false],
    ] as const) {
      let t = 0;
      let resume: () => void = () => {};
      const paused = new Promise<void>((resolve) => (resume = resolve));
      const id = `p${pausedMs}`;
      const { behaviour, venue, calls, outcomes, breaker } = setup(null, {
        acquireDelay: paused,
        clock: { now: () => new Date(t) },
      });
      const handled = behaviour.handle(message(id), signal);
      t = pausedMs;
      resume();
      await handled;
      expect({ pausedMs, submitted: venue.submitted.length > 0 }).toEqual({ pausedMs, submitted: submits });
      expect(calls).toEqual(submits ? ["placed v after 1"] : []);
      expect(outcomes).toEqual([submits ? "placed" : "retry"]);
      breaker.shutdown();
    }
  });

  test("venueSlots: an order frees its venue slot when the venue answers, not when its outcome is recorded", async () => {
    let storeAnswers: () => void = () => {};
    const { behaviour, breaker, venue, calls, outcomes } = setup(null, {
      venueSlots: 2,
      finalWriteDelay: new Promise<void>((resolve) => (storeAnswers = resolve)),
    });
    let wakes = 0;
    behaviour.onGateOpens!(() => wakes++);
    const acks: { resolve(ack: VenueAck): void; reject(error: Error): void }[] = [];
    venue.answer(() => new Promise<VenueAck>((resolve, reject) => acks.push({ resolve, reject })));
    // The two slots and one order read ahead (prefetchFor(2) = 1).
    expect(behaviour.gate!()).toBe(3);
    const ended: string[] = [];
    const first = behaviour.handle(message("o1"), signal).then(() => ended.push("o1"));
    const second = behaviour.handle(message("o2", {}, "2-0"), signal).then(() => ended.push("o2"));
    // Counted from before the lease: the read loop takes only the one order ahead meanwhile.
    expect(behaviour.gate!()).toBe(1);
    await waitFor(() => acks.length === 2, { timeoutMs: 2_000, intervalMs: 5 });
    acks[0]!.resolve({ venue_order_id: "v1", duplicate: false });
    await waitFor(() => behaviour.gate!() === 2, { timeoutMs: 2_000, intervalMs: 5 });
    expect({ atVenue: behaviour.atVenue(), wakes, ended }).toEqual({ atVenue: 1, wakes: 1, ended: [] });
    // A venue failure frees its slot too, before the retry is scheduled.
    acks[1]!.reject(new OrderPlacementError());
    await second;
    expect({ gate: behaviour.gate!(), atVenue: behaviour.atVenue(), wakes }).toEqual({
      gate: 3,
      atVenue: 0,
      wakes: 2,
    });
    // o1 is still recording its outcome (the store has not answered): its entry is not done yet.
    expect(ended).toEqual(["o2"]);
    storeAnswers();
    await first;
    expect(calls).toEqual(["placed v1 after 1"]);
    expect(outcomes.sort()).toEqual(["placed", "retry"]);
    breaker.shutdown();
  });

  test("venueSlots: an order read ahead is leased, waits for a slot, and takes the first one freed", async () => {
    const { behaviour, breaker, venue, states } = setup(null, { venueSlots: 2 });
    const acks: ((ack: VenueAck) => void)[] = [];
    venue.answer(() => new Promise<VenueAck>((resolve) => acks.push(resolve)));
    const handled = ["o1", "o2", "o3"].map((id, i) =>
      behaviour.handle(message(id, {}, `${i + 1}-0`), signal),
    );
    expect(behaviour.gate!()).toBe(0);
    await waitFor(() => states.get("o3")?.startsWith("lease:") === true, { timeoutMs: 2_000, intervalMs: 5 });
    await Bun.sleep(20);
    // Leased and ready, but never a third order at the venue.
    expect({ submitted: venue.submitted, atVenue: behaviour.atVenue() }).toEqual({
      submitted: ["o1", "o2"],
      atVenue: 2,
    });
    acks[1]!({ venue_order_id: "v2", duplicate: false });
    await waitFor(() => venue.submitted.length === 3, { timeoutMs: 2_000, intervalMs: 5 });
    expect({ submitted: venue.submitted, atVenue: behaviour.atVenue() }).toEqual({
      submitted: ["o1", "o2", "o3"],
      atVenue: 2,
    });
    acks[0]!({ venue_order_id: "v1", duplicate: false });
    acks[2]!({ venue_order_id: "v3", duplicate: false });
    await Promise.all(handled);
    expect({ gate: behaviour.gate!(), atVenue: behaviour.atVenue() }).toEqual({ gate: 3, atVenue: 0 });
    expect(["o1", "o2", "o3"].map((id) => states.get(id))).toEqual([
      "done:placed",
      "done:placed",
      "done:placed",
    ]);
    breaker.shutdown();
  });

  test("venueSlots: a shutdown while an order waits for a slot gives its lease back, unsubmitted", async () => {
    const { behaviour, breaker, venue, states } = setup(null, { venueSlots: 1 });
    const acks: ((ack: VenueAck) => void)[] = [];
    venue.answer(() => new Promise<VenueAck>((resolve) => acks.push(resolve)));
    const shutdown = new AbortController();
    // o1 is at the venue under a signal of its own, so that its slot outlives the shutdown of o2's.
    const first = behaviour.handle(message("o1"), signal);
    const waiting = behaviour.handle(message("o2", {}, "2-0"), shutdown.signal);
    await waitFor(() => states.get("o2")?.startsWith("lease:") === true, { timeoutMs: 2_000, intervalMs: 5 });
    shutdown.abort(new Error("shutting down"));
    // Left pending for the next delivery, with its lease given back.
    await expect(waiting).rejects.toThrow("shutting down");
    expect({ o2: states.get("o2"), submitted: venue.submitted, atVenue: behaviour.atVenue() }).toEqual({
      o2: "queued",
      submitted: ["o1"],
      atVenue: 1,
    });
    acks[0]!({ venue_order_id: "v1", duplicate: false });
    await first;
    expect({ gate: behaviour.gate!(), atVenue: behaviour.atVenue() }).toEqual({ gate: 2, atVenue: 0 });
    breaker.shutdown();
  });

  test("half-open: the gate admits one message, and keeps the door shut while its lease is taken", async () => {
    let release: () => void = () => {};
    const { behaviour, breaker, venue } = setup(null, {
      acquireDelay: new Promise<void>((resolve) => (release = resolve)),
    });
    venue.answer(async () => {
      throw new OrderPlacementError();
    });
    for (const id of ["a", "b", "c"])
      await breaker.place({ client_order_id: id } as ExchangeOrder, signal).catch(() => {});
    expect(behaviour.gate!()).toBe(0);
    await waitFor(() => breaker.state === "half-open", { timeoutMs: 2_000, intervalMs: 5 });
    expect(behaviour.gate!()).toBe(1);
    venue.answer(async () => ({ venue_order_id: "v", duplicate: false }));
    const trial = behaviour.handle(message("o11"), signal);
    // The lease has not been granted yet: the breaker knows of no trial, the gate does.
    expect(behaviour.gate!()).toBe(0);
    release();
    await trial;
    expect(breaker.state).toBe("closed");
    expect(behaviour.gate!()).toBe(Number.POSITIVE_INFINITY);
    breaker.shutdown();
  });
});

describe("stream trimming boundary", () => {
  test("compareIds orders by milliseconds, then sequence, numerically", () => {
    expect(compareIds("1-0", "2-0")).toBe(-1);
    expect(compareIds("10-0", "9-99")).toBe(1);
    expect(compareIds("5-10", "5-9")).toBe(1);
    expect(compareIds("1795656529590-3", "1795656529590-3")).toBe(0);
  });

  function upkeepOver(state: GroupState | null, oldestPending: string | null) {
    const trims: string[] = [];
    const port = strict<StreamPort>("port", {
      groupState: async () => state,
      oldestPendingId: async () => oldestPending,
      trimBelow: async (_stream, minId) => {
        trims.push(minId);
        return 0;
      },
    });
    return { upkeep: createStreamUpkeep({ port, streams: ["s"], group: "g", deadLetterStream: "d" }), trims };
  }
  const state = (lastDeliveredId: string): GroupState => ({
    length: 10,
    lag: 0,
    pending: 0,
    lastDeliveredId,
  });

  test("below the oldest pending entry when one exists", async () => {
    const { upkeep, trims } = upkeepOver(state("100-5"), "42-0");
    await upkeep.trimOnce();
    expect(trims).toEqual(["42-0"]);
  });

  test("just past the last delivered entry when nothing is pending, never into undelivered ones", async () => {
    const { upkeep, trims } = upkeepOver(state("100-5"), null);
    await upkeep.trimOnce();
    expect(trims).toEqual(["100-6"]);
  });

  test("nothing before the group delivered anything, or without a group", async () => {
    for (const [groupState, pending] of [
      [state("0-0"), null],
      [null, null],
    ] as const) {
      const { upkeep, trims } = upkeepOver(groupState, pending);
      await upkeep.trimOnce();
      expect(trims).toEqual([]);
    }
  });
});
