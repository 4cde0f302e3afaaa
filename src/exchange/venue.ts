/**
 * The simulated venue: the failure and latency model of the starter's `place_order`, plus what a real
 * venue adds, a record of every client order id it accepted. The in-process exchange (place-order.ts)
 * and the `exchange` process (venueRoutes below) share this one core, so both behave alike.
 *
 * One submission, in time order:
 * 1. no order -> PlaceOrderArgumentError (a bug, never retried);
 * 2. outage switched on -> OrderPlacementError at once (nobody answers, so there is nothing to wait for);
 * 3. one draw of `random()` decides whether the connection fails; a failing submission still takes the
 *    full latency and never reaches the record, so retrying it is always safe;
 * 4. the request leg (the first half of the latency), then the record point: an unknown id is recorded
 *    once, a known id is counted as a duplicate and acknowledged with its first venue_order_id;
 * 5. the answer leg (the second half). An abort there leaves the order recorded while the caller sees
 *    no acknowledgement: the ambiguous outcome that `lookup` resolves before a retry.
 * An abort before the record point leaves nothing behind.
 */
import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";
import { type FieldError, OrderPlacementError, PlaceOrderArgumentError } from "../domain/errors.ts";
import type { ExchangeOrder, VenueAck } from "./port.ts";

export interface VenueStats {
  /** Distinct client order ids recorded. */
  orders: number;
  /** Calls with an order that were not aborted before they started, whatever their outcome. */
  submissions: number;
  /** Submissions of an already recorded client order id, absorbed without placing again. */
  duplicates: number;
  /** Simulated connection failures, outage included. */
  failures: number;
}

export interface VenueSettings {
  /** Probability in [0, 1] that one submission fails. */
  failureRate: number;
  /** Duration of one submission in milliseconds. */
  latencyMs: number;
  /** When on, every submission fails at once with a transport failure (HTTP 503). */
  outage: boolean;
}

export interface VenueOptions {
  /** Probability in [0, 1] that one submission fails; EXCHANGE_FAILURE_RATE, default 0.1. */
  failureRate: number;
  /** Duration of one submission in ms; EXCHANGE_LATENCY_MS, default 500. */
  latencyMs: number;
  /** Uniform numbers in [0, 1), drawn once per submission; default Math.random. */
  random?: () => number;
  /** Waits `ms`, rejecting with the signal's reason when it aborts; default abortableSleep. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface Venue {
  /** Rejects with PlaceOrderArgumentError, OrderPlacementError or the signal's abort reason. */
  submit(order: ExchangeOrder | null | undefined, signal?: AbortSignal): Promise<VenueAck>;
  /** The venue's record of a client order id, or null; immediate (no simulated latency). */
  lookup(clientOrderId: string): VenueAck | null;
  /** Changes the given settings for every later submission and returns all settings. */
  configure(patch: Partial<VenueSettings>): VenueSettings;
  settings(): VenueSettings;
  stats(): VenueStats;
  /** Forgets every record and zeroes the stats (between benchmark runs). */
  reset(): void;
}

export const OUTAGE_MESSAGE = "Failed to place order at stock exchange. Venue unavailable (outage)";

/** Fraction of the latency spent before the record point; the rest is the acknowledgement travelling back. */
const RECORD_POINT = 0.5;

export function createVenue(options: VenueOptions): Venue {
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? abortableSleep;
  const current: VenueSettings = { failureRate: 0, latencyMs: 0, outage: false };
  const records = new Map<string, string>();
  let counters = { submissions: 0, duplicates: 0, failures: 0 };

  const configure = (patch: Partial<VenueSettings>): VenueSettings => {
    if (patch.failureRate !== undefined) {
      if (!(patch.failureRate >= 0 && patch.failureRate <= 1)) {
        throw new RangeError(`failureRate must be within [0, 1], got ${patch.failureRate}`);
      }
      current.failureRate = patch.failureRate;
    }
    if (patch.latencyMs !== undefined) {
      if (!(Number.isFinite(patch.latencyMs) && patch.latencyMs >= 0)) {
        throw new RangeError(`latencyMs must be a finite number >= 0, got ${patch.latencyMs}`);
      }
      current.latencyMs = patch.latencyMs;
    }
    if (patch.outage !== undefined) current.outage = patch.outage;
    return { ...current };
  };
  configure({ failureRate: options.failureRate, latencyMs: options.latencyMs });

  // Each leg re-checks the signal because an injected sleep may ignore it.
  const wait = async (ms: number, signal?: AbortSignal) => {
    await sleep(ms, signal);
    signal?.throwIfAborted();
  };

  return {
    async submit(order, signal) {
      if (!order) throw new PlaceOrderArgumentError();
      signal?.throwIfAborted();
      counters.submissions++;
      if (current.outage) {
        counters.failures++;
        throw new OrderPlacementError(OUTAGE_MESSAGE);
      }
      // Settings are read once so that a change made mid-call cannot split one submission's model.
      const { latencyMs, failureRate } = current;
      if (random() < failureRate) {
        await wait(latencyMs, signal);
        counters.failures++;
        throw new OrderPlacementError();
      }
      const requestLeg = Math.round(latencyMs * RECORD_POINT);
      await wait(requestLeg, signal);
      const known = records.get(order.client_order_id);
      let ack: VenueAck;
      if (known === undefined) {
        const venueOrderId = crypto.randomUUID();
        records.set(order.client_order_id, venueOrderId);
        ack = { venue_order_id: venueOrderId, duplicate: false };
      } else {
        counters.duplicates++;
        ack = { venue_order_id: known, duplicate: true };
      }
      await wait(latencyMs - requestLeg, signal);
      return ack;
    },
    lookup(clientOrderId) {
      const venueOrderId = records.get(clientOrderId);
      return venueOrderId === undefined ? null : { venue_order_id: venueOrderId, duplicate: false };
    },
    configure,
    settings: () => ({ ...current }),
    stats: () => ({ orders: records.size, ...counters }),
    reset() {
      records.clear();
      counters = { submissions: 0, duplicates: 0, failures: 0 };
    },
  };
}

/** setTimeout as a promise that rejects with the signal's reason (and clears its timer) on abort. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

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
 * a 503 a retryable transport failure. The admin routes are unauthenticated: this is a simulator that
 * tests and the chaos checker switch off and on.
 *
 * A submission does not observe the client disconnecting: like a real venue, a request that arrived is
 * processed, so a client that gave up learns the outcome only through GET /orders/:clientOrderId.
 */
export function venueRoutes(venue: Venue, metrics: Metrics) {
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
}
