/** The HTTP contract of /orders (docs/CONTRACT.md). These schemas are the only source of the matching types. */
import { type Static, Type as T, type TLiteral } from "@sinclair/typebox";
import { t } from "elysia";
import { ORDER_STATUSES } from "../domain/order.ts";

/** One literal per value, typed as the tuple it is (a plain `map` would type the union as `never`). */
function literals<const V extends readonly string[]>(values: V) {
  return values.map((value) => T.Literal(value)) as { -readonly [K in keyof V]: TLiteral<V[K]> };
}

const OrderStatus = (options: { description?: string } = {}) => T.Union(literals(ORDER_STATUSES), options);

export const MAX_QUANTITY = Number.MAX_SAFE_INTEGER;

export const MARKET_EXAMPLE = { type: "market", side: "buy", instrument: "US0378331005", quantity: 10 };
export const LIMIT_EXAMPLE = {
  type: "limit",
  side: "sell",
  instrument: "DE0007164600",
  limit_price: "123.45",
  quantity: 5,
};
export const MAX_BODY_BYTES = 16 * 1024;

export const OrderRequest = T.Object(
  {
    type: T.Union([T.Literal("market"), T.Literal("limit")], { description: "market or limit" }),
    side: T.Union([T.Literal("buy"), T.Literal("sell")], { description: "buy or sell" }),
    instrument: T.String({
      minLength: 12,
      maxLength: 12,
      // Letters and digits only: an ISIN has nothing else, and a NUL or a lone surrogate cannot even be
      // stored as it was sent (the embedded store refuses the first, and turns the second into U+FFFD).
      pattern: "^[A-Za-z0-9]{12}$",
      description: "an ISIN: 12 letters and digits, such as US0378331005",
      examples: ["US0378331005"],
      // The words of a length error (validation.ts adds the length received).
      error: "must be exactly 12 characters (an ISIN)",
    }),
    limit_price: T.Optional(
      T.Union(
        [T.Number({ exclusiveMinimum: 0 }), T.String({ pattern: "^(0|[1-9]\\d*)(\\.\\d{1,2})?$" }), T.Null()],
        {
          description:
            'Required and > 0 for limit orders, at most 2 decimals (number or string such as "10.50"); absent or null for market orders',
        },
      ),
    ),
    quantity: T.Integer({
      exclusiveMinimum: 0,
      maximum: MAX_QUANTITY,
      description: "Number of shares, 1 .. 2^53-1",
    }),
  },
  { additionalProperties: false, examples: [MARKET_EXAMPLE, LIMIT_EXAMPLE] },
);
export type OrderRequest = Static<typeof OrderRequest>;

export const OrderResponse = T.Object({
  id: T.String({ format: "uuid", description: "UUIDv7; also the client order id at the venue" }),
  created_at: T.String({ format: "date-time" }),
  type: T.Union([T.Literal("market"), T.Literal("limit")]),
  side: T.Union([T.Literal("buy"), T.Literal("sell")]),
  instrument: T.String(),
  limit_price: T.Union([T.Number(), T.Null()]),
  quantity: T.Integer(),
  status: OrderStatus(),
});
export type OrderResponse = Static<typeof OrderResponse>;

export const OrderDetailResponse = T.Composite([
  OrderResponse,
  T.Object({
    attempts: T.Integer({ description: "Placement attempts so far" }),
    placed_at: T.Union([T.String({ format: "date-time" }), T.Null()]),
    rejection_reason: T.Union([T.String(), T.Null()]),
    filled_quantity: T.Integer({ description: "Shares traded so far (the sum of the trade executions)" }),
    average_price: T.Union([T.Number(), T.Null()], {
      description: "Average price of the trades so far (4 decimals); null before the first trade",
    }),
    executions: T.Array(
      T.Object({
        exec_id: T.String({ description: "The venue's execution id" }),
        exec_type: T.Union([T.Literal("trade"), T.Literal("cancelled"), T.Literal("expired")], {
          description: "trade: shares traded; cancelled / expired: the venue ended the order's rest",
        }),
        quantity: T.Integer({ description: "Shares traded by this execution (0 unless a trade)" }),
        price: T.Union([T.Number(), T.Null()], { description: "Price of the trade; null unless a trade" }),
        executed_at: T.String({ format: "date-time", description: "When the venue executed it" }),
      }),
      {
        description:
          "Execution reports applied to the order, each venue execution once, in the order the venue executed them",
      },
    ),
  }),
]);
export type OrderDetailResponse = Static<typeof OrderDetailResponse>;

export const ValidationErrorResponse = T.Object(
  {
    message: T.String(),
    errors: T.Array(
      T.Object({
        field: T.String({ description: "The body field, header or query parameter at fault" }),
        message: T.String(),
      }),
    ),
  },
  {
    examples: [
      {
        message: "The order is invalid",
        errors: [{ field: "instrument", message: "must be exactly 12 characters (an ISIN), got 11" }],
      },
    ],
  },
);
export const MessageResponse = T.Object({ message: T.String() });

/** Elysia's `t`: query values arrive as strings, and its Integer converts them before validating. */
export const OrderListQuery = t.Object({
  status: T.Optional(OrderStatus({ description: "Only orders in this status" })),
  cursor: T.Optional(
    T.String({
      pattern: "^[0-9a-f-]{36}$",
      description: "The next_cursor of the previous page; absent for the first (newest) page",
    }),
  ),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50, description: "Orders per page" })),
});
export type OrderListQuery = Static<typeof OrderListQuery>;

export const OrderListResponse = T.Object({
  orders: T.Array(OrderDetailResponse, { description: "Newest first" }),
  next_cursor: T.Union([T.String(), T.Null()], {
    description: "Pass as `cursor` for the next (older) page; null on the last page",
  }),
});
export type OrderListResponse = Static<typeof OrderListResponse>;

/** The request headers /orders reads (names are case-insensitive; Elysia hands them lower-cased). */
export const OrderRequestHeaders = T.Object({
  "idempotency-key": T.Optional(
    T.String({
      pattern: "^[\\x21-\\x7e]{1,255}$",
      description:
        "1-255 printable ASCII characters, unique per account: a retry with the same key and body returns the first order",
    }),
  ),
});

export const INTERNAL_ERROR_BODY = { message: "Internal server error while placing the order" } as const;
export const NOT_FOUND_BODY = { message: "Order not found" } as const;
