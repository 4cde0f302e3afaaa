/**
 * The simulated venue's HTTP face for the `exchange` process: the wire schemas and `venueRoutes` over
 * the core in venue.ts. http-exchange.ts is its client.
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { ServerWebSocket } from "bun";
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";
import { type FieldError, OrderPlacementError } from "../domain/errors.ts";
import type { ExecutionFeed, FeedConnection, FeedSettings } from "./execution-feed.ts";
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

export const FeedSettingsBody = T.Object(
  {
    fills_per_order: T.Optional(T.Integer({ minimum: 0, maximum: 1_000 })),
    fill_delay_ms: T.Optional(T.Integer({ minimum: 0, maximum: 600_000 })),
    limit_unfilled_rate: T.Optional(T.Number({ minimum: 0, maximum: 1 })),
    drop_next: T.Optional(T.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);

export const FeedBurstBody = T.Object(
  {
    reports: T.Integer({ minimum: 1, maximum: 10_000_000 }),
    per_second: T.Integer({ minimum: 1, maximum: 1_000_000 }),
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
const feedSettingsChecker = TypeCompiler.Compile(FeedSettingsBody);
const burstChecker = TypeCompiler.Compile(FeedBurstBody);

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

const feedSettingsBody = (s: FeedSettings) => ({
  fills_per_order: s.fillsPerOrder,
  fill_delay_ms: s.fillDelayMs,
  limit_unfilled_rate: s.limitUnfilledRate,
  drop_next: s.dropNext,
});

/**
 * The execution feed's WebSocket (protocol: execution-feed.ts) and the fill state the checker compares
 * with. Read-only, so unauthenticated like GET /stats.
 */
function feedRoutes(feed: ExecutionFeed) {
  // Elysia wraps the socket anew for every event; Bun's ServerWebSocket underneath is the stable identity.
  const connections = new WeakMap<object, FeedConnection>();
  return new Elysia()
    .ws("/executions", {
      open(ws) {
        // Elysia's copy of Bun's socket type predates getBufferedAmount; the object is Bun's own.
        const raw = ws.raw as unknown as ServerWebSocket<unknown>;
        connections.set(
          raw,
          feed.connect({
            send: (text) => raw.sendText(text),
            bufferedAmount: () => raw.getBufferedAmount(),
            close: (code, reason) => raw.close(code, reason),
          }),
        );
      },
      message: (ws, message) => connections.get(ws.raw)?.message(message),
      drain: (ws) => connections.get(ws.raw)?.drain(),
      close(ws) {
        connections.get(ws.raw)?.closed();
        connections.delete(ws.raw);
      },
    })
    .get("/fills", () => feed.fills(), {
      detail: { tags: ["venue"], summary: "Each order's cum_qty and leaves_qty as the venue counts them" },
    });
}

function feedAdminRoutes(feed: ExecutionFeed) {
  return new Elysia()
    .post(
      "/admin/feed",
      ({ body, status }) => {
        const checked = check<Static<typeof FeedSettingsBody>>(feedSettingsChecker, body ?? {});
        if (!checked.ok) return status(422, { message: "invalid feed settings", errors: checked.errors });
        const { fills_per_order, fill_delay_ms, limit_unfilled_rate, drop_next } = checked.value;
        const patch = {
          fillsPerOrder: fills_per_order,
          fillDelayMs: fill_delay_ms,
          limitUnfilledRate: limit_unfilled_rate,
          dropNext: drop_next,
        };
        return status(200, feedSettingsBody(feed.configure(patch)));
      },
      {
        detail: {
          tags: ["venue"],
          summary: "Change the fill model, or drop the next reports from the live feed",
        },
      },
    )
    .post("/admin/feed/disconnect", () => ({ closed: feed.disconnectAll() }), {
      detail: { tags: ["venue"], summary: "Close every feed connection" },
    })
    .post(
      "/admin/feed/burst",
      ({ body, status }) => {
        const checked = check<Static<typeof FeedBurstBody>>(burstChecker, body);
        if (!checked.ok) return status(422, { message: "invalid burst", errors: checked.errors });
        return status(200, { scheduled: feed.burst(checked.value.reports, checked.value.per_second) });
      },
      { detail: { tags: ["venue"], summary: "Trade open orders one share at a time at a given rate" } },
    );
}

/**
 * The `exchange` process's HTTP face. A 422 is a final rejection for the client (OrderRejectedByVenueError),
 * a 503 a retryable transport failure. The admin routes (which can stop the venue) need the admin token
 * as a Bearer credential; without a configured token they are closed (403).
 *
 * A submission does not observe the client disconnecting: like a real venue, a request that arrived is
 * processed, so a client that gave up learns the outcome only through GET /orders/:clientOrderId.
 */
export function venueRoutes(
  venue: Venue,
  metrics: Metrics,
  options: { adminToken?: string; feed?: ExecutionFeed } = {},
) {
  const { feed } = options;
  const stats = () => ({ ...venue.stats(), ...settingsBody(venue.settings()), ...feed?.stats() });
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
        feed?.reset();
        return stats();
      },
      {
        detail: {
          tags: ["venue"],
          summary: "Forget every record, zero the counters, start a new feed session",
        },
      },
    )
    .use(feed ? feedAdminRoutes(feed) : new Elysia());
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
    .get("/stats", stats, {
      detail: { tags: ["venue"], summary: "Counters and current settings" },
    })
    .use(feed ? feedRoutes(feed) : new Elysia())
    .use(admin);
}

/** Compares in constant time, so that the answer's timing does not tell how much of a guess was right. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}
