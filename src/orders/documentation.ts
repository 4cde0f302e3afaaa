/**
 * The OpenAPI words of the /orders routes: summaries, every response each route can give (the schemas
 * are the named models of model.ts, by reference), examples, and the headers the answers carry. The
 * request body comes from the route's `body` model (its examples are the schema's `examples`).
 */

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
