import { describe, expect, test } from "bun:test";
import { OrderValidationError } from "../../src/domain/errors.ts";
import { validateOrderRequest } from "../../src/orders/validation.ts";

const market = { type: "market", side: "buy", instrument: "US0378331005", quantity: 1 };
const limit = { type: "limit", side: "sell", instrument: "US0378331005", quantity: 2, limit_price: "10.50" };

function fieldErrors(body: unknown) {
  try {
    validateOrderRequest(body);
  } catch (error) {
    if (error instanceof OrderValidationError) return error.errors;
    throw error;
  }
  throw new Error("expected a validation error");
}

describe("validateOrderRequest", () => {
  test("a market order becomes a draft without price", () => {
    expect(validateOrderRequest(market)).toEqual({
      type: "market",
      side: "buy",
      instrument: "US0378331005",
      quantity: 1,
      limitPriceCents: null,
    });
    expect(validateOrderRequest({ ...market, limit_price: null }).limitPriceCents).toBeNull();
  });

  test("a limit order keeps its price in exact cents", () => {
    expect(validateOrderRequest(limit).limitPriceCents).toBe(1050 as never);
    expect(validateOrderRequest({ ...limit, limit_price: 19.99 }).limitPriceCents).toBe(1999 as never);
  });

  test("the largest quantity is 2^53 - 1", () => {
    expect(validateOrderRequest({ ...market, quantity: Number.MAX_SAFE_INTEGER }).quantity).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(fieldErrors({ ...market, quantity: 2 ** 53 })).toEqual([
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
  ])("%j -> %s %s", (body, field, message) => {
    expect(fieldErrors(body)).toEqual([{ field, message }]);
  });

  test("every bad field is named at once", () => {
    expect(fieldErrors({ type: "limit", extra: 1 }).map((e) => e.field)).toEqual([
      "extra",
      "side",
      "instrument",
      "quantity",
      "limit_price",
    ]);
  });

  test.each([[null], [[]], ["order"], [42]])("a body that is not an object (%p) is refused", (body) => {
    expect(fieldErrors(body)).toEqual([{ field: "body", message: "must be a JSON object" }]);
  });
});
