/**
 * The simulated venue's HTTP face for the `exchange` process: the wire schemas and `venueRoutes` over
 * the core in venue.ts. http-exchange.ts is its client.
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";
import { type FieldError, OrderPlacementError } from "../domain/errors.ts";
import type { ExchangeOrder } from "./port.ts";
import type { Venue, VenueSettings } from "./venue.ts";

/** The venue's wire format of an order: port.ts's ExchangeOrder as JSON. */
export const VenueOrderBody = T.Object(
  {
    client_order_id: T.String({ minLength: 1, maxLength: 128 }),
    type: T.Union([T.Literal("market"), T.Literal("limit")]),
    side: T.Union([T.Literal("buy"), T.Literal("sell")]),
    instrument: T.String({ minLength: 12, maxLength: 12 }),
    limit_price_cents: T.Union([T.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), T.Null()]),
    quantity: T.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  },
  { additionalProperties: false },
);

export const VenueSettingsBody = T.Object(
  {
    failure_rate: T.Optional(T.Number({ minimum: 0, maximum: 1 })),
    latency_ms: T.Optional(T.Integer({ minimum: 0, maximum: 600_000 })),
    outage: T.Optional(T.Boolean()),
  },
  { additionalProperties: false },
);

// The wire schema and the port's interface must describe the same order; this fails to compile when
// either drifts.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const wireMatchesPort: Same<Static<typeof VenueOrderBody>, ExchangeOrder> = true;
void wireMatchesPort;

const orderChecker = TypeCompiler.Compile(VenueOrderBody);
const settingsChecker = TypeCompiler.Compile(VenueSettingsBody);

type Checked<V> = { ok: true; value: V } | { ok: false; errors: FieldError[] };

function check<V>(
  checker: { Check(v: unknown): boolean; Errors(v: unknown): Iterable<{ path: string; message: string }> },
  body: unknown,
): Checked<V> {
  if (checker.Check(body)) return { ok: true, value: body as V };
  const errors: FieldError[] = [];
  for (const error of checker.Errors(body)) {
    errors.push({ field: error.path.slice(1) || "body", message: error.message });
    if (errors.length >= 20) break;
  }
  return { ok: false, errors };
}

function checkOrder(body: unknown): Checked<ExchangeOrder> {
  const result = check<ExchangeOrder>(orderChecker, body);
  if (!result.ok) return result;
  const order = result.value;
  if (order.type === "limit" && order.limit_price_cents === null) {
    return { ok: false, errors: [{ field: "limit_price_cents", message: "is required for a limit order" }] };
  }
  if (order.type === "market" && order.limit_price_cents !== null) {
    return {
      ok: false,
      errors: [{ field: "limit_price_cents", message: "must be null for a market order" }],
    };
  }
  return result;
}

const settingsBody = (s: VenueSettings) => ({
  failure_rate: s.failureRate,
  latency_ms: s.latencyMs,
  outage: s.outage,
});

/**
 * The `exchange` process's HTTP face. A 422 is a final rejection for the client (OrderRejectedByVenueError),
 * a 503 a retryable transport failure. The admin routes (which can stop the venue) need the admin token
 * as a Bearer credential; without a configured token they are closed (403).
 *
 * A submission does not observe the client disconnecting: like a real venue, a request that arrived is
 * processed, so a client that gave up learns the outcome only through GET /orders/:clientOrderId.
 */
export function venueRoutes(venue: Venue, metrics: Metrics, options: { adminToken?: string } = {}) {
  const admin = new Elysia({ name: "venue-admin" })
    .onBeforeHandle({ as: "scoped" }, ({ request, status }) => {
      if (options.adminToken === undefined) {
        return status(403, { message: "the admin routes are closed: set EXCHANGE_ADMIN_TOKEN to open them" });
      }
      if (!sameSecret(request.headers.get("authorization") ?? "", `Bearer ${options.adminToken}`)) {
        return status(401, { message: "the admin routes need Authorization: Bearer <EXCHANGE_ADMIN_TOKEN>" });
      }
    })
    .post(
      "/admin/settings",
      ({ body, status }) => {
        const checked = check<Static<typeof VenueSettingsBody>>(settingsChecker, body);
        if (!checked.ok) return status(422, { message: "invalid settings", errors: checked.errors });
        const { failure_rate, latency_ms, outage } = checked.value;
        return status(
          200,
          settingsBody(venue.configure({ failureRate: failure_rate, latencyMs: latency_ms, outage })),
        );
      },
      { detail: { tags: ["venue"], summary: "Change failure rate, latency or outage" } },
    )
    .post(
      "/admin/reset",
      () => {
        venue.reset();
        return { ...venue.stats(), ...settingsBody(venue.settings()) };
      },
      { detail: { tags: ["venue"], summary: "Forget every record and zero the counters" } },
    );
  return new Elysia()
    .onError(({ code, set }) => {
      if (code === "PARSE") {
        set.status = 422;
        return {
          message: "invalid request body",
          errors: [{ field: "body", message: "must be a JSON object" }],
        };
      }
    })
    .post(
      "/orders",
      async ({ body, status }) => {
        const checked = checkOrder(body);
        if (!checked.ok) {
          metrics.venueSubmissions.inc({ result: "rejected" });
          return status(422, { message: "invalid order", errors: checked.errors });
        }
        try {
          const ack = await venue.submit(checked.value);
          metrics.venueSubmissions.inc({ result: ack.duplicate ? "duplicate" : "placed" });
          return status(201, ack);
        } catch (error) {
          if (!(error instanceof OrderPlacementError)) throw error;
          metrics.venueSubmissions.inc({ result: "failed" });
          return status(503, { message: error.message });
        }
      },
      { detail: { tags: ["venue"], summary: "Submit an order; its client_order_id is the idempotency key" } },
    )
    .get(
      "/orders/:clientOrderId",
      ({ params, status }) => {
        const ack = venue.lookup(params.clientOrderId);
        return ack ? status(200, ack) : status(404, { message: "Order not known at the venue" });
      },
      { detail: { tags: ["venue"], summary: "The venue's record of a client order id" } },
    )
    .get("/stats", () => ({ ...venue.stats(), ...settingsBody(venue.settings()) }), {
      detail: { tags: ["venue"], summary: "Counters and current settings" },
    })
    .use(admin);
}

/** Compares in constant time, so that the answer's timing does not tell how much of a guess was right. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}
