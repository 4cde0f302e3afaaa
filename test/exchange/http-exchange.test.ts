import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { createMetrics } from "../../src/adapters/metrics.ts";
import { OrderPlacementError, OrderRejectedByVenueError } from "../../src/domain/errors.ts";
import { createHttpExchange, type FetchLike } from "../../src/exchange/http-exchange.ts";
import type { ExchangeOrder } from "../../src/exchange/port.ts";
import { createVenue, venueRoutes } from "../../src/exchange/venue.ts";

const order = (id: string, overrides: Partial<ExchangeOrder> = {}): ExchangeOrder => ({
  client_order_id: id,
  type: "market",
  side: "sell",
  instrument: "DE0007164600",
  limit_price_cents: null,
  quantity: 5,
  ...overrides,
});

async function waitFor<T>(probe: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await Bun.sleep(50);
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("HTTP venue driven through createHttpExchange", () => {
  const metrics = createMetrics("exchange");
  const venue = createVenue({ failureRate: 0, latencyMs: 0 });
  const app = new Elysia().use(venueRoutes(venue, metrics));
  let baseUrl = "";

  const admin = async (path: string, body?: unknown) => {
    const response = await fetch(`${baseUrl}/admin/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body ?? {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  beforeAll(() => {
    app.listen({ hostname: "127.0.0.1", port: 0 });
    baseUrl = `http://127.0.0.1:${app.server?.port}`;
  });

  afterAll(async () => {
    await app.stop(true);
  });

  beforeEach(async () => {
    await admin("settings", { failure_rate: 0, latency_ms: 0, outage: false });
    await admin("reset");
  });

  test("places an order once, absorbs a resubmission and finds it by client order id", async () => {
    const exchange = createHttpExchange({ baseUrl });
    const first = await exchange.placeOrder(order("o-1"));
    expect(first.duplicate).toBe(false);
    expect(first.venue_order_id).toBeString();
    expect(await exchange.placeOrder(order("o-1"))).toEqual({
      venue_order_id: first.venue_order_id,
      duplicate: true,
    });
    expect(await exchange.lookup("o-1")).toEqual({ venue_order_id: first.venue_order_id, duplicate: false });
    expect(await exchange.lookup("never/sent")).toBeNull();

    const stats = (await (await fetch(`${baseUrl}/stats`)).json()) as Record<string, unknown>;
    expect(stats).toEqual({
      orders: 1,
      submissions: 2,
      duplicates: 1,
      failures: 0,
      failure_rate: 0,
      latency_ms: 0,
      outage: false,
    });
  });

  test("a base URL with a trailing slash works the same", async () => {
    const exchange = createHttpExchange({ baseUrl: `${baseUrl}/` });
    expect((await exchange.placeOrder(order("o-slash"))).duplicate).toBe(false);
  });

  test("an order the venue refuses becomes OrderRejectedByVenueError with the venue's reason", async () => {
    const exchange = createHttpExchange({ baseUrl });
    const wrongIsin = await rejectionOf(exchange.placeOrder(order("o-2", { instrument: "SHORT" })));
    expect(wrongIsin).toBeInstanceOf(OrderRejectedByVenueError);
    expect((wrongIsin as OrderRejectedByVenueError).reason).toContain("instrument");

    const limitWithoutPrice = await rejectionOf(exchange.placeOrder(order("o-3", { type: "limit" })));
    expect(limitWithoutPrice).toBeInstanceOf(OrderRejectedByVenueError);
    expect((limitWithoutPrice as OrderRejectedByVenueError).reason).toContain("limit_price_cents");
    expect(await exchange.lookup("o-2")).toBeNull();
  });

  test("a body that is not JSON is answered 422 with field errors", async () => {
    const response = await fetch(`${baseUrl}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({ message: expect.any(String), errors: expect.any(Array) });
  });

  test("an outage switched on through /admin/settings fails placements until it is switched off", async () => {
    const exchange = createHttpExchange({ baseUrl });
    expect(await admin("settings", { outage: true })).toEqual({
      status: 200,
      body: { failure_rate: 0, latency_ms: 0, outage: true },
    });
    const error = await rejectionOf(exchange.placeOrder(order("o-4")));
    expect(error).toBeInstanceOf(OrderPlacementError);
    expect((error as Error).message).toContain("503");
    expect(await exchange.lookup("o-4")).toBeNull();

    await admin("settings", { outage: false });
    expect((await exchange.placeOrder(order("o-4"))).duplicate).toBe(false);
  });

  test("a simulated connection failure is a retryable OrderPlacementError", async () => {
    const exchange = createHttpExchange({ baseUrl });
    await admin("settings", { failure_rate: 1 });
    await expect(exchange.placeOrder(order("o-5"))).rejects.toBeInstanceOf(OrderPlacementError);
    const stats = (await (await fetch(`${baseUrl}/stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ orders: 0, submissions: 1, failures: 1, failure_rate: 1 });
  });

  test("invalid settings are refused with 422 and change nothing", async () => {
    const refused = await admin("settings", { failure_rate: 2, colour: "red" });
    expect(refused.status).toBe(422);
    expect(refused.body.errors).toBeArray();
    const stats = (await (await fetch(`${baseUrl}/stats`)).json()) as Record<string, unknown>;
    expect(stats.failure_rate).toBe(0);
  });

  test("an aborted call on a slow venue rejects at once with the caller's reason", async () => {
    const exchange = createHttpExchange({ baseUrl });
    await admin("settings", { latency_ms: 2_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = performance.now();
    const error = await rejectionOf(exchange.placeOrder(order("o-6"), controller.signal));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(error).toBe(controller.signal.reason);
    expect(error).not.toBeInstanceOf(OrderPlacementError);
    // The request had reached the venue, which processes it anyway: only lookup can tell.
    const recorded = await waitFor(() => exchange.lookup("o-6"), 10_000);
    expect(recorded.duplicate).toBe(false);
  });

  test("/admin/reset forgets records and counters, and the metric counts by result", async () => {
    const exchange = createHttpExchange({ baseUrl });
    await exchange.placeOrder(order("o-7"));
    await exchange.placeOrder(order("o-7"));
    await rejectionOf(exchange.placeOrder(order("o-8", { quantity: 0 })));
    const reset = await admin("reset");
    expect(reset.body).toMatchObject({ orders: 0, submissions: 0, duplicates: 0, failures: 0 });
    expect(await exchange.lookup("o-7")).toBeNull();

    const counted = await metrics.venueSubmissions.get();
    const byResult = Object.fromEntries(counted.values.map((v) => [v.labels.result, v.value]));
    expect(byResult.placed).toBeGreaterThanOrEqual(1);
    expect(byResult.duplicate).toBeGreaterThanOrEqual(1);
    expect(byResult.rejected).toBeGreaterThanOrEqual(1);
  });
});

describe("createHttpExchange failure classification", () => {
  const answer =
    (status: number, body: unknown): FetchLike =>
    async () =>
      new Response(typeof body === "string" ? body : JSON.stringify(body), { status });

  test("5xx, unexpected statuses and malformed acknowledgements are retryable placement errors", async () => {
    for (const fetch of [
      answer(500, { message: "boom" }),
      answer(502, "<html>bad gateway</html>"),
      answer(404, { message: "no such route" }),
      answer(201, { venue_order_id: 42 }),
    ]) {
      const exchange = createHttpExchange({ baseUrl: "http://venue.invalid", fetch });
      await expect(exchange.placeOrder(order("x"))).rejects.toBeInstanceOf(OrderPlacementError);
    }
  });

  test("400 and 422 are final rejections", async () => {
    for (const status of [400, 422]) {
      const exchange = createHttpExchange({
        baseUrl: "http://venue.invalid",
        fetch: answer(status, { message: "nope" }),
      });
      const error = await rejectionOf(exchange.placeOrder(order("x")));
      expect(error).toBeInstanceOf(OrderRejectedByVenueError);
      expect((error as OrderRejectedByVenueError).reason).toBe("nope");
    }
  });

  test("lookup: 404 is null, anything else unexpected is a placement error", async () => {
    const missing = createHttpExchange({
      baseUrl: "http://venue.invalid",
      fetch: answer(404, { message: "unknown" }),
    });
    expect(await missing.lookup("x")).toBeNull();
    const broken = createHttpExchange({ baseUrl: "http://venue.invalid", fetch: answer(500, {}) });
    await expect(broken.lookup("x")).rejects.toBeInstanceOf(OrderPlacementError);
  });

  test("a refused connection is a placement error that keeps its cause", async () => {
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const closedPort = server.port;
    await server.stop(true);
    const exchange = createHttpExchange({ baseUrl: `http://127.0.0.1:${closedPort}` });
    const error = await rejectionOf(exchange.placeOrder(order("x")));
    expect(error).toBeInstanceOf(OrderPlacementError);
    expect((error as Error).cause).toBeDefined();
  });

  test("the backstop timeout is a placement error, not the caller's abort", async () => {
    const hanging: FetchLike = (_input, init) =>
      new Promise((_resolve, reject) => {
        init.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true });
      });
    const exchange = createHttpExchange({ baseUrl: "http://venue.invalid", fetch: hanging, timeoutMs: 20 });
    await expect(exchange.placeOrder(order("x"), new AbortController().signal)).rejects.toBeInstanceOf(
      OrderPlacementError,
    );
  });
});
