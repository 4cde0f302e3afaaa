/**
 * What the OrderRequest schema cannot say, and the schema's own errors in plain words. The rules of the
 * shape live only in model.ts (Elysia validates the body against it); this file adds the price rule
 * (market vs limit, exact cents) and names every bad field at once.
 */
import { type ValueError, ValueErrorType } from "@sinclair/typebox/errors";
import { type FieldError, OrderValidationError } from "../domain/errors.ts";
import { parsePrice } from "../domain/money.ts";
import type { OrderDraft } from "../domain/order.ts";
import type { OrderRequest } from "./model.ts";

/** A body that passed the schema becomes a draft, or an OrderValidationError naming the price. */
export function toDraft(body: OrderRequest): OrderDraft {
  const price = checkLimitPrice(body);
  if (!price.ok) throw new OrderValidationError([price.error]);
  return {
    type: body.type,
    side: body.side,
    instrument: body.instrument,
    limitPriceCents: price.cents,
    quantity: body.quantity,
  };
}

/**
 * The field errors of a body that failed the schema: one per field (the first the schema found), the
 * price rule's verdict on `limit_price` (more telling than the schema's "no variant matched").
 */
export function describeBodyErrors(errors: readonly ValueError[], body: unknown): FieldError[] {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return [{ field: "body", message: "must be a JSON object" }];
  }
  const byField = new Map<string, string>();
  const price = checkLimitPrice(body as Record<string, unknown>);
  if (!price.ok) byField.set("limit_price", price.error.message);
  for (const error of errors) {
    // "" is the body itself; "/" is a field named "".
    const field = error.path === "" ? "body" : topLevelField(error.path);
    if (!byField.has(field)) byField.set(field, describe(error));
  }
  return [...byField].map(([field, message]) => ({ field, message }));
}

/** The first segment of a JSON Pointer (RFC 6901), unescaped: `/a~1b/0` is the field `a/b`. */
export function topLevelField(pointer: string): string {
  return (pointer.split("/")[1] ?? "").replaceAll("~1", "/").replaceAll("~0", "~");
}

/** One schema error in the words of docs/CONTRACT.md, derived from the schema keyword that failed. */
export function describe(error: ValueError): string {
  const schema = error.schema as Record<string, unknown>;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return "is required";
    case ValueErrorType.ObjectAdditionalProperties:
      return "is not a known field";
    case ValueErrorType.Union: {
      const values = ((schema.anyOf as { const?: unknown }[] | undefined) ?? []).map((s) => s.const);
      return values.length > 0 && values.every((v) => typeof v === "string")
        ? `must be one of ${values.map((v) => `"${v}"`).join(", ")}`
        : "has none of the allowed types";
    }
    case ValueErrorType.String:
      return "must be a string";
    case ValueErrorType.Integer:
      return "must be an integer";
    case ValueErrorType.Number:
      return "must be a number";
    case ValueErrorType.StringMinLength:
    case ValueErrorType.StringMaxLength: {
      const got = typeof error.value === "string" ? `, got ${error.value.length}` : "";
      if (typeof schema.error === "string") return `${schema.error}${got}`;
      return error.type === ValueErrorType.StringMinLength
        ? `must be at least ${schema.minLength} characters${got}`
        : `must be at most ${schema.maxLength} characters${got}`;
    }
    case ValueErrorType.StringPattern:
      return typeof schema.description === "string"
        ? `must be ${schema.description}`
        : "has an invalid format";
    case ValueErrorType.IntegerExclusiveMinimum:
    case ValueErrorType.NumberExclusiveMinimum:
      return `must be greater than ${schema.exclusiveMinimum}`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${schema.minimum}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${schema.maximum}`;
    default:
      return "is invalid";
  }
}

type PriceVerdict = { ok: true; cents: OrderDraft["limitPriceCents"] } | { ok: false; error: FieldError };

/** Market orders carry no price; limit orders carry a positive price with at most 2 decimals. */
function checkLimitPrice(input: Record<string, unknown>): PriceVerdict {
  const price = input.limit_price;
  const absent = price === undefined || price === null;
  const refuse = (message: string): PriceVerdict => ({ ok: false, error: { field: "limit_price", message } });
  if (input.type === "market") {
    return absent ? { ok: true, cents: null } : refuse("must be absent or null for a market order");
  }
  if (input.type !== "limit") return { ok: true, cents: null };
  if (absent) return refuse("is required for a limit order");
  if (typeof price !== "number" && typeof price !== "string") {
    return refuse('must be a number or a decimal string such as "10.50"');
  }
  const parsed = parsePrice(price);
  return parsed.ok ? { ok: true, cents: parsed.cents } : refuse(parsed.reason);
}
