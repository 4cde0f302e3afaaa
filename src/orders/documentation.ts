/**
 * The OpenAPI words of the /orders routes: summaries, every response each route can give (the schemas
 * are the named models of model.ts, by reference), examples, and the headers the answers carry. The
 * request body comes from the route's `body` model (its examples are the schema's `examples`).
 */

import { ORDER_STATUSES } from "../domain/order.ts";

const ref = (model: string) => ({ $ref: `#/components/schemas/${model}` });
const header = (description: string, type: "string" | "integer" = "string") => ({
  description,
  schema: { type },
});
const json = (description: string, model: string, example?: unknown) => ({
  description,
  content: { "application/json": { schema: ref(model), ...(example === undefined ? {} : { example }) } },
});

const RATE_HEADERS = {
  RateLimit: header('The account\'s remaining quota and seconds to reset, e.g. `"default";r=99;t=1`'),
  "RateLimit-Policy": header('The account\'s quota policy, e.g. `"default";q=400;w=2`'),
};

/** The answers every /orders route can give besides its own. */
const COMMON_RESPONSES = {
  401: {
    ...json("No API key, or an unknown or revoked one", "Message", {
      message: "An API key is required: send Authorization: Bearer <key>",
    }),
    headers: { "WWW-Authenticate": header("The Bearer challenge (RFC 6750)") },
  },
  429: {
    ...json("The account is over its rate limit; nothing was done", "Message", {
      message: "Too many requests; retry after 1 s",
    }),
    headers: {
      "Retry-After": header("Seconds to wait before retrying", "integer"),
      ...RATE_HEADERS,
    },
  },
};

export function orderRoutesDocumentation() {
  return {
    placeOrder: {
      tags: ["orders"],
      summary: "Place an order",
      description:
        "Stores the order durably (MongoDB, write concern majority + journal) and guarantees its placement at the exchange, which happens asynchronously. Send an Idempotency-Key to retry safely.",
      responses: {
        201: {
          ...json("The order is stored and its placement is guaranteed", "Order"),
          headers: {
            Location: header("The order's URL"),
            "Idempotent-Replayed": header(
              "`true` when this is the first order of the same Idempotency-Key, answered again",
            ),
            ...RATE_HEADERS,
          },
        },
        409: json("A request with the same Idempotency-Key is still in progress", "Message", {
          message: "A request with this Idempotency-Key is still in progress; retry later",
        }),
        413: json("The body is larger than 16 KiB", "ValidationError"),
        415: json("The body is not sent as application/json", "ValidationError"),
        422: json(
          "The body breaks a rule (every bad field is named), or the Idempotency-Key was used with another body; nothing is stored",
          "ValidationError",
        ),
        500: {
          ...json(
            'Internal error; the body is exactly {"message": "Internal server error while placing the order"}. The order may have been stored: retry with the same Idempotency-Key, or look up the X-Order-Id',
            "Message",
            { message: "Internal server error while placing the order" },
          ),
          headers: {
            "X-Order-Id": header(
              "The id the order would have (a UUID), present once the service tried to store it: GET /orders/{id} tells whether it was stored (and will be placed)",
            ),
          },
        },
        503: {
          ...json(
            "The order store is not keeping up (one of intake's MongoDB steps waited INTAKE_SHED_AFTER_MS, 2 s, without an answer): the order is refused before the API key is looked up and nothing is stored, so a retry is safe with or without an Idempotency-Key. One order every 0.5 s is let through as a trial; once the store answers in time, every order is admitted again",
            "Message",
            { message: "The order store is not keeping up; nothing was stored. Retry after 1 s" },
          ),
          headers: { "Retry-After": header("Seconds to wait before retrying", "integer") },
        },
        ...COMMON_RESPONSES,
      },
    },
    listOrders: {
      tags: ["orders"],
      summary: "The caller's orders, newest first",
      description: "Cursor pagination: pass a page's `next_cursor` as `cursor` to get the next (older) page.",
      responses: {
        200: json("A page of the account's orders", "OrderList"),
        422: json("A query parameter is invalid (each is named)", "ValidationError"),
        500: json("Internal error", "Message", { message: "Internal server error" }),
        ...COMMON_RESPONSES,
      },
    },
    getOrder: {
      tags: ["orders"],
      summary: "An order with its placement state",
      responses: {
        200: json("The order", "OrderDetail"),
        404: json("Unknown id, or another account's order", "Message", { message: "Order not found" }),
        500: json("Internal error", "Message", { message: "Internal server error" }),
        ...COMMON_RESPONSES,
      },
    },
  };
}

/** One frame of GET /orders/events (a WebSocket text message), as src/adapters/order-events.ts writes it. */
const ORDER_EVENT_FRAME = {
  type: "object",
  required: [
    "id",
    "order_id",
    "status",
    "at",
    "filled_quantity",
    "average_price",
    "execution",
    "rejection_reason",
  ],
  properties: {
    id: {
      type: "string",
      pattern: "^\\d+-\\d+$",
      description: "The event id, increasing per account: send the last one received as `last_event_id`",
    },
    order_id: { type: "string", format: "uuid" },
    // Every status but `placing`, which is never stored (the lease lives in Redis) and so never sent.
    status: { type: "string", enum: ORDER_STATUSES.filter((status) => status !== "placing") },
    at: {
      type: "string",
      format: "date-time",
      description: "When the change happened (the venue's time for an execution)",
    },
    filled_quantity: { type: "integer", minimum: 0 },
    average_price: {
      type: ["number", "null"],
      description: "Average price of the trades so far, in currency units; null before the first trade",
    },
    execution: {
      description: "The execution that caused this update, when one did",
      oneOf: [
        {
          type: "object",
          required: ["exec_id", "exec_type", "quantity", "price"],
          properties: {
            exec_id: { type: "string" },
            exec_type: { type: "string", enum: ["trade", "cancelled", "expired"] },
            quantity: { type: "integer", minimum: 0 },
            price: {
              type: ["number", "null"],
              description: "The trade's price; null for cancelled and expired",
            },
          },
        },
        { type: "null" },
      ],
    },
    rejection_reason: { type: ["string", "null"] },
  },
};

/** GET /orders/events: OpenAPI has no WebSocket, so the upgrade is a GET answered 101 with the frame's schema. */
export function orderEventsDocumentation() {
  return {
    tags: ["orders"],
    summary: "The caller's order updates, live (WebSocket)",
    description:
      "Open a WebSocket (`ws://` or `wss://`) to this path. Each text message is one event of the caller's orders, oldest first, never one twice. Authenticate with `Authorization: Bearer <key>`, or, from a browser, with the subprotocols `bearer, <key>` (the server selects `bearer`). After a disconnect, reconnect with `last_event_id` set to the last `id` received: the events after it come first (the last ORDER_EVENTS_RETAINED, 10,000 by default, are kept per account), then live ones. The feed notifies; GET /orders/{id} is the truth.",
    parameters: [
      {
        name: "last_event_id",
        in: "query" as const,
        required: false,
        description: "Resume after this event id; without it, the feed starts with the next event",
        schema: { type: "string" as const, pattern: "^\\d+-\\d+$" },
        example: "1718000000000-0",
      },
    ],
    responses: {
      101: {
        description:
          "Switching Protocols: the WebSocket is open. The content is the schema of each text message (not of this answer, which has none)",
        headers: {
          Upgrade: header("`websocket`"),
          "Sec-WebSocket-Protocol": header("`bearer`, when the key came as a subprotocol"),
        },
        content: {
          "application/json": {
            // The plugin types OpenAPI 3.0; the document is 3.1, where `type` may list "null".
            schema: ORDER_EVENT_FRAME as { type: "object" },
            example: {
              id: "1718000000000-0",
              order_id: "0190a6c2-8f3e-7c4a-9b1d-2e5f6a7b8c9d",
              status: "partially_filled",
              at: "2024-06-10T06:13:20.000Z",
              filled_quantity: 40,
              average_price: 101.25,
              execution: { exec_id: "E-17", exec_type: "trade", quantity: 40, price: 101.25 },
              rejection_reason: null,
            },
          },
        },
      },
      422: json("`last_event_id` is not an event id; nothing is opened", "ValidationError"),
      426: {
        ...json("Not a WebSocket request: send `Upgrade: websocket`", "Message", {
          message: "Connect with a WebSocket (Upgrade: websocket)",
        }),
        headers: { Upgrade: header("`websocket`") },
      },
      503: {
        ...json("Redis cannot say where the feed starts; nothing is opened", "Message", {
          message: "The event feed is unavailable; retry later",
        }),
        headers: { "Retry-After": header("Seconds to wait before reconnecting", "integer") },
      },
      500: json("Internal error", "Message", { message: "Internal server error" }),
      default: json("Any other refusal of the upgrade (no WebSocket opened)", "Message"),
      ...COMMON_RESPONSES,
    },
  };
}
