/**
 * The placement actor's pure parts: the breaker's gate (closed, open, one half-open trial however long
 * the MongoDB claim before it takes), the outcomes of one message, and the trim boundary math. Doubles
 * stand in for MongoDB and the venue; they fail loudly on anything they do not implement.
 */
import { describe, expect, test } from "bun:test";
import { ExchangeBreaker } from "../../actors/placement/exchange-breaker.ts";
import { createPlacementBehaviour, type PlacementOutcome } from "../../actors/placement/placement-actor.ts";
import { compareIds, createStreamUpkeep } from "../../actors/placement/stream-upkeep.ts";
import type { GroupState, StreamPort } from "../../actors/runtime/redis-streams.ts";
import { OrderPlacementError, OrderRejectedByVenueError } from "../../src/domain/errors.ts";
import { newOrderRecord, type OrderRecord } from "../../src/domain/order.ts";
import type { OrderRepository } from "../../src/domain/ports.ts";
import type { Exchange, ExchangeOrder, VenueAck } from "../../src/exchange/port.ts";
import { silentLogger } from "../../src/logger.ts";
import { waitFor } from "../harness/wait-for.ts";

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
      { partitions: 1, dispatchGraceMs: 1_000, idempotencyKey: null },
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

describe("placement behaviour", () => {
  function setup(
    stored: OrderRecord,
    claimDelay?: Promise<void>,
    clock: { now(): Date } = { now: () => new Date() },
  ) {
    const venue = scriptedVenue();
    const breaker = new ExchangeBreaker(venue.exchange, breakerOptions);
    const calls: string[] = [];
    const outcomes: PlacementOutcome[] = [];
    const deadLetters: Record<string, string>[] = [];
    let claims = 0;
    const orders = strict<OrderRepository>("orders", {
      claim: async (_id, now, leaseMs, token) => {
        claims += 1;
        await claimDelay;
        return {
          ...stored,
          status: "placing",
          attempts: stored.attempts + 1,
          lease_until: new Date(now.getTime() + leaseMs),
          lease_token: token,
        };
      },
      findById: async () => stored,
      markPlaced: async () => {
        calls.push("placed");
        return true;
      },
      markRejected: async (_id, reason) => {
        calls.push(`rejected: ${reason}`);
        return true;
      },
      release: async () => {
        calls.push("released");
        return true;
      },
    });
    const behaviour = createPlacementBehaviour({
      orders,
      exchange: venue.exchange,
      breaker,
      clock,
      logger: silentLogger,
      leaseMs: 1_000,
      retry: { baseMs: 10, maxMs: 100 },
      deadLetter: async (fields) => void deadLetters.push(fields),
      observe: (outcome) => outcomes.push(outcome),
    });
    return { venue, breaker, behaviour, calls, outcomes, deadLetters, claims: () => claims };
  }
  const message = (orderId: string, id = "1-0") => ({ stream: "s", id, fields: { order_id: orderId } });
  const signal = new AbortController().signal;

  test("a first attempt is submitted without a look-up; placed, then durable", async () => {
    const { behaviour, venue, calls, outcomes, breaker } = setup(order("o1"));
    await behaviour.handle(message("o1"), signal);
    expect(venue.looked).toEqual([]);
    expect(venue.submitted).toEqual(["o1"]);
    expect(calls).toEqual(["placed"]);
    expect(outcomes).toEqual(["placed"]);
    breaker.shutdown();
  });

  test("an order attempted before, or touched by the sweeper, is looked up before resubmitting", async () => {
    for (const stored of [order("o2", { attempts: 1 }), order("o3", { redispatches: 1 })]) {
      const { behaviour, venue, breaker } = setup(stored);
      await behaviour.handle(message(stored._id), signal);
      expect(venue.looked).toEqual([stored._id]);
      breaker.shutdown();
    }
  });

  test("a transport failure releases the order for a retry; a rejection is final with a dead-letter entry", async () => {
    const failing = setup(order("o4"));
    failing.venue.answer(async () => {
      throw new OrderPlacementError();
    });
    await failing.behaviour.handle(message("o4"), signal);
    expect(failing.calls).toEqual(["released"]);
    expect(failing.outcomes).toEqual(["retry"]);
    failing.breaker.shutdown();

    const rejecting = setup(order("o5"));
    rejecting.venue.answer(async () => {
      throw new OrderRejectedByVenueError("instrument unknown");
    });
    await rejecting.behaviour.handle(message("o5"), signal);
    expect(rejecting.calls).toEqual(["rejected: order rejected by the venue: instrument unknown"]);
    expect(rejecting.deadLetters).toEqual([
      { order_id: "o5", reason: "order rejected by the venue: instrument unknown", kind: "rejected" },
    ]);
    rejecting.breaker.shutdown();
  });

  test("a lease that runs out before the submission (a paused process) releases the order unsubmitted", async () => {
    // Paused during the claim for `pausedMs`, with a lease of 1,000 ms.
    for (const [pausedMs, submits] of [
      [999, true],
      [1_000, false],
      [5_000, false],
    ] as const) {
      let t = 0;
      let resume: () => void = () => {};
      const paused = new Promise<void>((resolve) => (resume = resolve));
      const { behaviour, venue, calls, outcomes, breaker } = setup(order(`p${pausedMs}`), paused, {
        now: () => new Date(t),
      });
      const handled = behaviour.handle(message(`p${pausedMs}`), signal);
      t = pausedMs;
      resume();
      await handled;
      expect({ pausedMs, submitted: venue.submitted.length > 0 }).toEqual({ pausedMs, submitted: submits });
      expect(calls).toEqual([submits ? "placed" : "released"]);
      expect(outcomes).toEqual([submits ? "placed" : "retry"]);
      breaker.shutdown();
    }
  });

  test("a second entry for an order already in progress here is skipped without a claim", async () => {
    let release: () => void = () => {};
    const { behaviour, claims, outcomes, breaker } = setup(
      order("o6"),
      new Promise<void>((resolve) => (release = resolve)),
    );
    const first = behaviour.handle(message("o6", "1-0"), signal);
    await behaviour.handle(message("o6", "2-0"), signal);
    expect(outcomes).toEqual(["skipped"]);
    release();
    await first;
    expect(claims()).toBe(1);
    breaker.shutdown();
  });

  test("half-open: the gate admits one message, and keeps the door shut while its claim runs", async () => {
    let release: () => void = () => {};
    const { behaviour, breaker, venue } = setup(
      order("o7"),
      new Promise<void>((resolve) => (release = resolve)),
    );
    venue.answer(async () => {
      throw new OrderPlacementError();
    });
    for (const id of ["a", "b", "c"])
      await breaker.place({ client_order_id: id } as ExchangeOrder, signal).catch(() => {});
    expect(behaviour.gate!()).toBe(0);
    await waitFor(() => breaker.state === "half-open", { timeoutMs: 2_000, intervalMs: 5 });
    expect(behaviour.gate!()).toBe(1);
    venue.answer(async () => ({ venue_order_id: "v", duplicate: false }));
    const trial = behaviour.handle(message("o7"), signal);
    // The claim in MongoDB has not returned yet: the breaker knows of no trial, the gate does.
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
