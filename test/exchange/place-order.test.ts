import { describe, expect, test } from "bun:test";
import { OrderPlacementError, PlaceOrderArgumentError } from "../../src/domain/errors.ts";
import { createInProcessExchange, placeOrder } from "../../src/exchange/place-order.ts";
import type { ExchangeOrder } from "../../src/exchange/port.ts";
import { abortableSleep, createVenue } from "../../src/exchange/venue.ts";
import { seeded, sequence } from "../support/random.ts";

const order = (id = "0190d0a2-0000-7000-8000-000000000001"): ExchangeOrder => ({
  client_order_id: id,
  type: "limit",
  side: "buy",
  instrument: "US0378331005",
  limit_price_cents: 1050,
  quantity: 10,
});

/** A sleep that records the requested durations and returns at once. */
function instantSleep() {
  const calls: number[] = [];
  return { calls, sleep: async (ms: number) => void calls.push(ms) };
}

/** A sleep whose legs the test releases one by one; an abort rejects the pending leg like abortableSleep. */
function steppedSleep() {
  const pending: Array<() => void> = [];
  const sleep = (_ms: number, signal?: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      pending.push(resolve);
      const onAbort = () => {
        pending.splice(pending.indexOf(resolve), 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  return { pending, sleep };
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("in-process exchange", () => {
  test("rejects a call without an order with PlaceOrderArgumentError and counts nothing", async () => {
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 0, random: sequence() });
    await expect(exchange.placeOrder(undefined as unknown as ExchangeOrder)).rejects.toBeInstanceOf(
      PlaceOrderArgumentError,
    );
    await expect(placeOrder()).rejects.toBeInstanceOf(PlaceOrderArgumentError);
    await expect(placeOrder(null)).rejects.toBeInstanceOf(PlaceOrderArgumentError);
    expect(exchange.stats()).toEqual({ orders: 0, submissions: 0, duplicates: 0, failures: 0 });
  });

  test("fails exactly when the draw is below the failure rate, before anything is recorded", async () => {
    const { calls, sleep } = instantSleep();
    const exchange = createInProcessExchange({
      failureRate: 0.1,
      latencyMs: 500,
      random: sequence(0.05, 0.5, 0.0999, 0.1),
      sleep,
    });
    const first = exchange.placeOrder(order("a"));
    await expect(first).rejects.toBeInstanceOf(OrderPlacementError);
    await expect(first).rejects.toThrow("Failed to place order at stock exchange. Connection not available");
    expect(await exchange.lookup("a")).toBeNull();

    expect((await exchange.placeOrder(order("b"))).duplicate).toBe(false);
    await expect(exchange.placeOrder(order("c"))).rejects.toBeInstanceOf(OrderPlacementError);
    expect((await exchange.placeOrder(order("c"))).duplicate).toBe(false);

    expect(exchange.stats()).toEqual({ orders: 2, submissions: 4, duplicates: 0, failures: 2 });
    // Every submission takes the full latency: a failure in one sleep, a success in two legs.
    expect(calls).toEqual([500, 250, 250, 500, 250, 250]);
  });

  test("fails at about the configured rate over many seeded draws", async () => {
    const exchange = createInProcessExchange({
      failureRate: 0.1,
      latencyMs: 0,
      random: seeded(42),
      sleep: async () => {},
    });
    let failures = 0;
    for (let i = 0; i < 10_000; i++) {
      try {
        await exchange.placeOrder(order(`id-${i}`));
      } catch (error) {
        expect(error).toBeInstanceOf(OrderPlacementError);
        failures++;
      }
    }
    expect(failures / 10_000).toBeGreaterThan(0.085);
    expect(failures / 10_000).toBeLessThan(0.115);
    expect(exchange.stats()).toEqual({
      orders: 10_000 - failures,
      submissions: 10_000,
      duplicates: 0,
      failures,
    });
  });

  test("records a client order id once and acknowledges a resubmission as a duplicate", async () => {
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 0, random: () => 0.5 });
    const first = await exchange.placeOrder(order("dup"));
    const second = await exchange.placeOrder(order("dup"));
    expect(first.duplicate).toBe(false);
    expect(second).toEqual({ venue_order_id: first.venue_order_id, duplicate: true });
    expect(await exchange.lookup("dup")).toEqual({ venue_order_id: first.venue_order_id, duplicate: false });
    expect(await exchange.lookup("never-sent")).toBeNull();
    expect(exchange.stats()).toEqual({ orders: 1, submissions: 2, duplicates: 1, failures: 0 });
  });

  test("concurrent submissions of one id place it once", async () => {
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 20, random: () => 0.5 });
    const acks = await Promise.all(Array.from({ length: 5 }, () => exchange.placeOrder(order("same"))));
    expect(new Set(acks.map((a) => a.venue_order_id)).size).toBe(1);
    expect(acks.filter((a) => !a.duplicate)).toHaveLength(1);
    expect(exchange.stats()).toMatchObject({ orders: 1, duplicates: 4 });
  });

  test("an abort before the record point stops the call and leaves nothing recorded", async () => {
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 2_000, random: () => 0.5 });
    const controller = new AbortController();
    const started = performance.now();
    const call = exchange.placeOrder(order("early"), controller.signal);
    setTimeout(() => controller.abort(), 20);
    const error = await call.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe("AbortError");
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await exchange.lookup("early")).toBeNull();
    expect(exchange.stats()).toEqual({ orders: 0, submissions: 1, duplicates: 0, failures: 0 });
  });

  test("an abort after the record point leaves the order recorded without an acknowledgement", async () => {
    const { pending, sleep } = steppedSleep();
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 500, random: () => 0.5, sleep });
    const controller = new AbortController();
    const call = exchange.placeOrder(order("late"), controller.signal);
    await flush();
    pending.shift()?.();
    await flush();
    expect(await exchange.lookup("late")).not.toBeNull();
    controller.abort(new Error("attempt timed out"));
    await expect(call).rejects.toThrow("attempt timed out");
    const retry = exchange.placeOrder(order("late"));
    for (let leg = 0; leg < 2; leg++) {
      await flush();
      pending.shift()?.();
    }
    expect((await retry).duplicate).toBe(true);
    expect(exchange.stats()).toEqual({ orders: 1, submissions: 2, duplicates: 1, failures: 0 });
  });

  test("an already aborted signal is not a submission", async () => {
    const exchange = createInProcessExchange({ failureRate: 0, latencyMs: 0, random: sequence() });
    await expect(exchange.placeOrder(order(), AbortSignal.abort())).rejects.toMatchObject({
      name: "AbortError",
    });
    expect(exchange.stats().submissions).toBe(0);
  });
});

describe("venue core", () => {
  test("an outage fails every submission at once without drawing or sleeping", async () => {
    const { calls, sleep } = instantSleep();
    const venue = createVenue({ failureRate: 0, latencyMs: 500, random: sequence(0.5), sleep });
    expect(venue.configure({ outage: true })).toEqual({ failureRate: 0, latencyMs: 500, outage: true });
    await expect(venue.submit(order("x"))).rejects.toBeInstanceOf(OrderPlacementError);
    expect(calls).toEqual([]);
    venue.configure({ outage: false });
    expect((await venue.submit(order("x"))).duplicate).toBe(false);
    expect(venue.stats()).toEqual({ orders: 1, submissions: 2, duplicates: 0, failures: 1 });
  });

  test("configure validates and reset forgets records and counters", async () => {
    const venue = createVenue({ failureRate: 0, latencyMs: 0 });
    expect(() => venue.configure({ failureRate: 1.5 })).toThrow(RangeError);
    expect(() => venue.configure({ latencyMs: -1 })).toThrow(RangeError);
    expect(() => createVenue({ failureRate: Number.NaN, latencyMs: 0 })).toThrow(RangeError);
    await venue.submit(order("r"));
    venue.reset();
    expect(venue.stats()).toEqual({ orders: 0, submissions: 0, duplicates: 0, failures: 0 });
    expect(venue.lookup("r")).toBeNull();
  });

  test("abortableSleep rejects with the signal's reason and resolves otherwise", async () => {
    await abortableSleep(1);
    const reason = new Error("stop");
    await expect(abortableSleep(10_000, AbortSignal.abort(reason))).rejects.toBe(reason);
    const controller = new AbortController();
    const sleeping = abortableSleep(10_000, controller.signal);
    controller.abort(reason);
    await expect(sleeping).rejects.toBe(reason);
  });
});
