/**
 * Turns a parsed JSON body into an OrderDraft or a list of field errors in plain words. The TypeBox
 * schema states the shape; the rules a schema cannot say (price exactness, market vs limit) follow.
 */
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { type FieldError, OrderValidationError } from "../domain/errors.ts";
import { parsePrice } from "../domain/money.ts";
import type { OrderDraft } from "../domain/order.ts";
import { MAX_QUANTITY, OrderRequest } from "./model.ts";

const checker = TypeCompiler.Compile(OrderRequest);
const KNOWN_FIELDS = new Set(Object.keys(OrderRequest.properties));

export function validateOrderRequest(body: unknown): OrderDraft {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new OrderValidationError([{ field: "body", message: "must be a JSON object" }]);
  }
  const input = body as Record<string, unknown>;
  const errors: FieldError[] = [];
  for (const field of Object.keys(input)) {
    if (!KNOWN_FIELDS.has(field)) errors.push({ field, message: "is not a known field" });
  }
  checkEnum(input, "type", ["market", "limit"], errors);
  checkEnum(input, "side", ["buy", "sell"], errors);

  const instrument = input.instrument;
  if (instrument === undefined) errors.push({ field: "instrument", message: "is required" });
  else if (typeof instrument !== "string") errors.push({ field: "instrument", message: "must be a string" });
  else if (instrument.length !== 12) {
    errors.push({
      field: "instrument",
      message: `must be exactly 12 characters (an ISIN), got ${instrument.length}`,
    });
  }

  const quantity = input.quantity;
  if (quantity === undefined) errors.push({ field: "quantity", message: "is required" });
  else if (typeof quantity !== "number" || !Number.isInteger(quantity)) {
    errors.push({ field: "quantity", message: "must be an integer" });
  } else if (quantity < 1) errors.push({ field: "quantity", message: "must be greater than 0" });
  else if (quantity > MAX_QUANTITY)
    errors.push({ field: "quantity", message: "must be at most 9007199254740991" });

  const limitPriceCents = checkLimitPrice(input, errors);

  // The hand-written rules above say everything the schema says, in plain words; the compiled schema
  // is the backstop that keeps the two from drifting apart.
  if (errors.length === 0 && !checker.Check(body)) {
    const first = checker.Errors(body).First();
    errors.push({ field: first?.path.slice(1) || "body", message: first?.message ?? "is invalid" });
  }
  if (errors.length > 0) throw new OrderValidationError(errors);
  return {
    type: input.type as OrderDraft["type"],
    side: input.side as OrderDraft["side"],
    instrument: instrument as string,
    limitPriceCents,
    quantity: quantity as number,
  };
}

function checkEnum(input: Record<string, unknown>, field: string, allowed: string[], errors: FieldError[]) {
  const value = input[field];
  if (value === undefined) errors.push({ field, message: "is required" });
  else if (typeof value !== "string" || !allowed.includes(value)) {
    errors.push({ field, message: `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}` });
  }
}

function checkLimitPrice(
  input: Record<string, unknown>,
  errors: FieldError[],
): OrderDraft["limitPriceCents"] {
  const price = input.limit_price;
  const absent = price === undefined || price === null;
  if (input.type === "market") {
    if (!absent) errors.push({ field: "limit_price", message: "must be absent or null for a market order" });
    return null;
  }
  if (input.type !== "limit") return null;
  if (absent) {
    errors.push({ field: "limit_price", message: "is required for a limit order" });
    return null;
  }
  if (typeof price !== "number" && typeof price !== "string") {
    errors.push({ field: "limit_price", message: 'must be a number or a decimal string such as "10.50"' });
    return null;
  }
  const parsed = parsePrice(price);
  if (!parsed.ok) {
    errors.push({ field: "limit_price", message: parsed.reason });
    return null;
  }
  return parsed.cents;
}
