import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { ExchangeBreaker } from "../../actors/placement/exchange-breaker.ts";
import { createMetrics } from "../../src/adapters/metrics.ts";
import {
  isRetryable,
  OrderPlacementError,
  OrderRejectedByVenueError,
  VenueProtocolError,
} from "../../src/domain/errors.ts";
import { createHttpExchange, type FetchLike, parseRetryAfter } from "../../src/exchange/http-exchange.ts";
import type { ExchangeOrder } from "../../src/exchange/port.ts";
import { createVenue } from "../../src/exchange/venue.ts";
import { venueRoutes } from "../../src/exchange/venue-routes.ts";

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
  const adminToken = "venue-admin-token-of-this-test";
  const app = new Elysia().use(venueRoutes(venue, metrics, { adminToken }));
  let baseUrl = "";

  const admin = async (path: string, body?: unknown, token: string | null = adminToken) => {
    const response = await fetch(`${baseUrl}/admin/${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body ?? {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  test("the admin routes need the admin token; without a configured token they are closed", async () => {
    expect((await admin("settings", { outage: true }, null)).status).toBe(401);
    expect((await admin("settings", { outage: true }, "a-wrong-token-of-some-length")).status).toBe(401);
    expect((await admin("reset", {}, null)).status).toBe(401);
    expect((await admin("settings", { outage: false })).status).toBe(200);
    const closed = new Elysia().use(venueRoutes(createVenue({ failureRate: 0, latencyMs: 0 }), metrics));
    const answer = await closed.handle(
      new Request("http://localhost/admin/reset", { method: "POST", headers: { authorization: "Bearer x" } }),
    );
    expect(answer.status).toBe(403);
  });

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

  test("5xx and malformed acknowledgements are retryable placement errors", async () => {
    for (const fetch of [
      answer(500, { message: "boom" }),
      answer(502, "<html>bad gateway</html>"),
      answer(201, { venue_order_id: 42 }),
    ]) {
      const exchange = createHttpExchange({ baseUrl: "http://venue.invalid", fetch });
      await expect(exchange.placeOrder(order("x"))).rejects.toBeInstanceOf(OrderPlacementError);
    }
  });

  test("400 and 422 are final rejections with the venue's own reason", async () => {
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

/**
 * A real HTTP venue stub (Bun.serve) that answers a submission with the status its client order id
 * names ("status-403" -> 403), so every status goes over a real socket through fetch.
 */
describe("createHttpExchange against a venue answering each status", () => {
  const HTTP_DATE_IN_30_S = () => new Date(Date.now() + 30_000).toUTCString();
  const requests: { method: string; path: string }[] = [];
  let server: ReturnType<typeof Bun.serve>;
  let baseUrl = "";

  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        requests.push({ method: request.method, path: url.pathname });
        if (url.pathname === "/elsewhere") return Response.json({ venue_order_id: "v-1", duplicate: false });
        const id =
          request.method === "POST"
            ? ((await request.json()) as ExchangeOrder).client_order_id
            : decodeURIComponent(url.pathname.split("/").pop() ?? "");
        const status = Number(/^status-(\d+)/.exec(id)?.[1] ?? 201);
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (id.endsWith("-retry-after-seconds")) headers["retry-after"] = "7";
        if (id.endsWith("-retry-after-date")) headers["retry-after"] = HTTP_DATE_IN_30_S();
        if (status >= 300 && status < 400) headers.location = `http://127.0.0.1:${server.port}/elsewhere`;
        if (status === 201 || status === 200) {
          return new Response(JSON.stringify({ venue_order_id: `v-${id}`, duplicate: false }), {
            status,
            headers,
          });
        }
        if (status === 299) return new Response("<html>ok</html>", { status: 200 });
        return new Response(JSON.stringify({ message: `refused with ${status}` }), { status, headers });
      },
    });
    baseUrl = `http://127.0.0.1:${server.port}`;
  });

  afterAll(async () => {
    await server.stop(true);
  });

  beforeEach(() => {
    requests.length = 0;
  });

  const exchange = () => createHttpExchange({ baseUrl });

  test("every 4xx but 408 and 429 is a final rejection naming the status; not retryable", async () => {
    for (const status of [400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451]) {
      const error = await rejectionOf(exchange().placeOrder(order(`status-${status}`)));
      expect(error, `HTTP ${status}`).toBeInstanceOf(OrderRejectedByVenueError);
      expect(isRetryable(error), `HTTP ${status}`).toBe(false);
      expect((error as OrderRejectedByVenueError).httpStatus).toBe(status);
      const reason = (error as OrderRejectedByVenueError).reason;
      // 400 and 422 are the venue judging the order: its own words. Other 4xx name the status.
      expect(reason, `HTTP ${status}`).toBe(
        status === 400 || status === 422
          ? `refused with ${status}`
          : `venue answered HTTP ${status}: refused with ${status}`,
      );
    }
  });

  test("5xx, 408 and 429 are retryable placement errors carrying the status", async () => {
    for (const status of [408, 429, 500, 502, 503, 504]) {
      const error = await rejectionOf(exchange().placeOrder(order(`status-${status}`)));
      expect(error, `HTTP ${status}`).toBeInstanceOf(OrderPlacementError);
      expect(error, `HTTP ${status}`).not.toBeInstanceOf(VenueProtocolError);
      expect(isRetryable(error), `HTTP ${status}`).toBe(true);
      expect((error as OrderPlacementError).httpStatus).toBe(status);
      expect((error as OrderPlacementError).retryAfterMs).toBeUndefined();
    }
  });

  test("a 429 or 503 with Retry-After carries it as retryAfterMs (seconds or an HTTP-date)", async () => {
    const seconds = await rejectionOf(exchange().placeOrder(order("status-429-retry-after-seconds")));
    expect(seconds).toBeInstanceOf(OrderPlacementError);
    expect((seconds as OrderPlacementError).retryAfterMs).toBe(7_000);

    const date = await rejectionOf(exchange().placeOrder(order("status-503-retry-after-date")));
    expect(date).toBeInstanceOf(OrderPlacementError);
    // An HTTP-date has whole seconds: 30 s from the stub's clock, minus what the trip and rounding took.
    expect((date as OrderPlacementError).retryAfterMs).toBeGreaterThan(25_000);
    expect((date as OrderPlacementError).retryAfterMs).toBeLessThanOrEqual(30_000);

    const lookup = await rejectionOf(exchange().lookup("status-429-retry-after-seconds"));
    expect((lookup as OrderPlacementError).retryAfterMs).toBe(7_000);
  });

  test("an unknown answer is a retryable VenueProtocolError: a 2xx without an ack, a redirect (not followed)", async () => {
    for (const id of ["status-299", "status-202-odd", "status-301", "status-302", "status-307"]) {
      requests.length = 0;
      const error = await rejectionOf(exchange().placeOrder(order(id)));
      expect(error, id).toBeInstanceOf(VenueProtocolError);
      expect(error, id).toBeInstanceOf(OrderPlacementError);
      expect(isRetryable(error), id).toBe(true);
      expect((error as Error).message, id).toContain("unexpected answer");
      // A redirect is never followed: the order is not re-sent anywhere else.
      expect(requests, id).toEqual([{ method: "POST", path: "/orders" }]);
    }
  });

  test("any 2xx with an acknowledgement is a placement", async () => {
    expect(await exchange().placeOrder(order("status-200-ok"))).toEqual({
      venue_order_id: "v-status-200-ok",
      duplicate: false,
    });
    expect(await exchange().placeOrder(order("plain"))).toEqual({
      venue_order_id: "v-plain",
      duplicate: false,
    });
  });

  test("lookup is never final: 404 is null, any other refusal a retryable error", async () => {
    expect(await exchange().lookup("status-404")).toBeNull();
    expect(await exchange().lookup("status-200-known")).toEqual({
      venue_order_id: "v-status-200-known",
      duplicate: false,
    });
    for (const id of ["status-403", "status-409", "status-500", "status-302"]) {
      const error = await rejectionOf(exchange().lookup(id));
      expect(error, id).toBeInstanceOf(OrderPlacementError);
      expect(isRetryable(error), id).toBe(true);
    }
  });

  test("final rejections never open the circuit breaker; 5xx do", async () => {
    const options = {
      timeoutMs: 5_000,
      errorThresholdPercent: 50,
      volumeThreshold: 2,
      resetTimeoutMs: 60_000,
    };
    const shutdown = new AbortController().signal;

    const refusing = new ExchangeBreaker(exchange(), options);
    try {
      for (const status of [400, 401, 403, 404, 409, 413, 422, 403, 401, 404]) {
        const error = await rejectionOf(refusing.place(order(`status-${status}`), shutdown));
        expect(error, `HTTP ${status}`).toBeInstanceOf(OrderRejectedByVenueError);
      }
      expect(refusing.state).toBe("closed");
      expect(refusing.capacity()).toBe(Number.POSITIVE_INFINITY);
    } finally {
      refusing.shutdown();
    }

    const failing = new ExchangeBreaker(exchange(), options);
    try {
      for (const status of [503, 500, 429])
        await rejectionOf(failing.place(order(`status-${status}`), shutdown));
      expect(failing.state).toBe("open");
    } finally {
      failing.shutdown();
    }
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  test.each([
    [null, undefined],
    ["", undefined],
    ["0", 0],
    ["120", 120_000],
    [" 5 ", 5_000],
    ["-1", undefined],
    ["1.5", undefined],
    ["soon", undefined],
    ["Thu, 01 Jan 2026 00:00:30 GMT", 30_000],
    ["Thursday, 01-Jan-26 00:00:30 GMT", 30_000],
    ["Wed, 31 Dec 2025 23:59:00 GMT", 0],
  ])("%p -> %p", (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});
