/**
 * The validation of POST /orders as the client meets it: the controller alone through `app.handle`
 * (no servers), with an order service that fails the test if a rejected body ever reaches it.
 */
import { describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { createMetrics } from "../../src/adapters/metrics.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { silentLogger } from "../../src/logger.ts";
import { ordersController } from "../../src/orders/index.ts";
import type { OrderService, PlaceRequest } from "../../src/orders/service.ts";

const market = { type: "market", side: "buy", instrument: "US0378331005", quantity: 1 };
const limit = { type: "limit", side: "sell", instrument: "US0378331005", quantity: 2, limit_price: "10.50" };

/** The controller over a service that records what reached it and answers with a stored order. */
function controller() {
  const placed: PlaceRequest[] = [];
  const service: OrderService = {
    async place(request) {
      placed.push(request);
      const order = newOrderRecord("0190f0c0-0000-7000-8000-000000000000", request.draft, new Date(0), {
        partitions: 1,
        dispatchGraceMs: 0,
        idempotencyKey: request.idempotencyKey,
        account: request.account,
      });
      return { order, replayed: false };
    },
    admit() {},
    get: () => Promise.reject(new Error("not used")),
    list: () => Promise.reject(new Error("not used")),
  };
  const app = new Elysia({ normalize: false }).use(
    ordersController({
      service,
      metrics: createMetrics("api"),
      logger: silentLogger,
      deadlineMs: 1_000,
      auth: { mode: "off" },
      rateLimiting: null,
    }),
  );
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    app.handle(
      new Request("http://localhost/orders", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    );
  return { post, placed };
}

async function fieldErrors(body: unknown, headers: Record<string, string> = {}) {
  const { post, placed } = controller();
  const response = await post(body, headers);
  expect(response.status).toBe(422);
  expect(placed).toEqual([]);
  return ((await response.json()) as { errors: { field: string; message: string }[] }).errors;
}

describe("POST /orders validation (controller, no servers)", () => {
  test("a market order reaches the service as a draft without price", async () => {
    const { post, placed } = controller();
    expect((await post(market)).status).toBe(201);
    expect((await post({ ...market, limit_price: null })).status).toBe(201);
    expect(placed.map((p) => p.draft)).toEqual([
      { type: "market", side: "buy", instrument: "US0378331005", quantity: 1, limitPriceCents: null },
      { type: "market", side: "buy", instrument: "US0378331005", quantity: 1, limitPriceCents: null },
    ]);
  });

  test("a limit order keeps its price in exact cents", async () => {
    const { post, placed } = controller();
    await post(limit);
    await post({ ...limit, limit_price: 19.99 });
    expect(placed.map((p) => Number(p.draft.limitPriceCents))).toEqual([1050, 1999]);
  });

  test("the largest quantity is 2^53 - 1", async () => {
    const { post, placed } = controller();
    expect((await post({ ...market, quantity: Number.MAX_SAFE_INTEGER })).status).toBe(201);
    expect(placed[0]?.draft.quantity).toBe(Number.MAX_SAFE_INTEGER);
    expect(await fieldErrors({ ...market, quantity: 2 ** 53 })).toEqual([
      { field: "quantity", message: "must be at most 9007199254740991" },
    ]);
  });

  test.each([
    [{ ...market, type: "stop" }, "type", 'must be one of "market", "limit"'],
    [{ ...market, side: 1 }, "side", 'must be one of "buy", "sell"'],
    [
      { ...market, instrument: "US037833100" },
      "instrument",
      "must be exactly 12 characters (an ISIN), got 11",
    ],
    [{ ...market, instrument: 123456789012 }, "instrument", "must be a string"],
    [{ ...market, quantity: 0 }, "quantity", "must be greater than 0"],
    [{ ...market, quantity: 1.5 }, "quantity", "must be an integer"],
    [{ ...market, quantity: "5" }, "quantity", "must be an integer"],
    [{ ...market, limit_price: 10 }, "limit_price", "must be absent or null for a market order"],
    [{ ...limit, limit_price: undefined }, "limit_price", "is required for a limit order"],
    [{ ...limit, limit_price: null }, "limit_price", "is required for a limit order"],
    [{ ...limit, limit_price: true }, "limit_price", 'must be a number or a decimal string such as "10.50"'],
    [{ ...limit, limit_price: 0 }, "limit_price", "must be greater than 0"],
    [{ ...limit, limit_price: 1.234 }, "limit_price", "must have at most 2 decimal places"],
    [{ ...market, note: "x" }, "note", "is not a known field"],
  ])("%j -> %s %s", async (body, field, message) => {
    expect(await fieldErrors(body)).toEqual([{ field, message }]);
  });

  test("every bad field is named at once", async () => {
    const fields = (await fieldErrors({ type: "limit", extra: 1 })).map((e) => e.field);
    expect(fields.sort()).toEqual(["extra", "instrument", "limit_price", "quantity", "side"]);
  });

  test.each([[null], [[]], ["order"], [42]])("a body that is not an object (%p) is refused", async (body) => {
    expect(await fieldErrors(JSON.stringify(body))).toEqual([
      { field: "body", message: "must be a JSON object" },
    ]);
  });

  test("a bad Idempotency-Key is named as the header", async () => {
    expect(await fieldErrors(market, { "idempotency-key": "with space" })).toEqual([
      { field: "Idempotency-Key", message: expect.stringContaining("printable ASCII") },
    ]);
  });

  test("415 for a body not sent as JSON, 422 for JSON that does not parse, nothing reaches the service", async () => {
    const { post, placed } = controller();
    const asText = await post(JSON.stringify(market), { "content-type": "text/plain" });
    expect(asText.status).toBe(415);
    const notJson = await post("{not json");
    expect(notJson.status).toBe(422);
    expect(((await notJson.json()) as { errors: unknown[] }).errors).toEqual([
      { field: "body", message: "is not valid JSON" },
    ]);
    expect(placed).toEqual([]);
  });
});
