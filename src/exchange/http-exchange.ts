/**
 * The exchange reached over HTTP (EXCHANGE_URL): the client of venueRoutes in venue-routes.ts. Every outcome
 * is classified here, where it happens (docs/ARCHITECTURE.md guarantee 4):
 *
 * | what came back                                   | error                                | retry | breaker |
 * |--------------------------------------------------|--------------------------------------|-------|---------|
 * | 2xx with an acknowledgement                      | none: placed                         |       |         |
 * | network error, refused connection, the backstop  | OrderPlacementError (`cause` kept)   | yes   | counts  |
 * | 5xx                                              | OrderPlacementError                  | yes   | counts  |
 * | 429 Too Many Requests, 408 Request Timeout       | OrderPlacementError                  | yes   | counts  |
 * | any other 4xx (400 401 403 404 409 413 422 ...)  | OrderRejectedByVenueError (final)    | no    | no      |
 * | 2xx without an acknowledgement, 1xx, 3xx, other  | VenueProtocolError                   | yes   | counts  |
 *
 * - A 429, 503 (or any retryable answer) with a Retry-After header carries it as `retryAfterMs`.
 * - 408 is the one 4xx that is retryable: the venue (or a proxy) gave up waiting for the request, which
 *   says nothing about the order.
 * - A final rejection is the order's end: `rejected` with the reason in MongoDB, counted in
 *   placement_outcomes_total{outcome="rejected"}, no dead-letter entry (nothing is left to replay).
 *   400 and 422 carry the venue's own reason (its message and field errors); other 4xx say the status
 *   too, since they are about the request (credentials, route, size), not the order: a wrong
 *   EXCHANGE_URL path or an expired credential rejects orders (no alert rule watches rejections yet).
 * - An unknown answer is retryable, never final: a success without an acknowledgement may have placed
 *   the order, and the look-up before the next submission (plus the client order id) makes the retry
 *   safe. It counts as a breaker failure (the venue misbehaves); if it persists the order stays
 *   unfinished and OrderUnfinishedTooLong fires. Redirects are not followed (an order is never re-sent
 *   to another address unasked): a 3xx is such an unknown answer.
 * - The caller's signal aborted -> its reason, unwrapped, so the caller's timeout classification sees
 *   its own error. Whether an aborted submission reached the venue is unknown; `lookup` tells.
 *
 * The circuit breaker (actors/placement/exchange-breaker.ts) ignores every error whose `retryable` is
 * false, so a final rejection never opens it.
 */
import { OrderPlacementError, OrderRejectedByVenueError, VenueProtocolError } from "../domain/errors.ts";
import type { Exchange, ExchangeOrder, VenueAck } from "./port.ts";

export type FetchLike = (input: URL, init: RequestInit) => Promise<Response>;

export interface HttpExchangeOptions {
  /** The venue's base URL, such as `http://exchange:3000`; routes are resolved below it. */
  baseUrl: string;
  /** Default: the global fetch. */
  fetch?: FetchLike;
  /**
   * Backstop for a call whose caller passed no signal or a signal that never fires; default 30 000 ms.
   * The actors' own per-attempt timeout (BREAKER_TIMEOUT_MS) is meant to be the shorter one.
   */
  timeoutMs?: number;
}

const CONNECTION_FAILED = "Failed to place order at stock exchange. Connection not available";

interface Answer {
  status: number;
  body: unknown;
  /** The Retry-After header in milliseconds, when present and valid. */
  retryAfterMs: number | undefined;
}

export function createHttpExchange(options: HttpExchangeOptions): Exchange {
  const base = options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`;
  const send = options.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = options.timeoutMs ?? 30_000;

  async function call(path: string, init: RequestInit, signal: AbortSignal | undefined): Promise<Answer> {
    signal?.throwIfAborted();
    const backstop = AbortSignal.timeout(timeoutMs);
    try {
      const response = await send(new URL(path, base), {
        ...init,
        redirect: "manual",
        signal: signal ? AbortSignal.any([signal, backstop]) : backstop,
      });
      const text = await response.text();
      return {
        status: response.status,
        body: parseJson(text),
        retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
      };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new OrderPlacementError(CONNECTION_FAILED, { cause: error });
    }
  }

  return {
    async placeOrder(order: ExchangeOrder, signal?: AbortSignal): Promise<VenueAck> {
      const answer = await call(
        "orders",
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(order) },
        signal,
      );
      if (isSuccess(answer.status) && isAck(answer.body)) return answer.body;
      if (isFinalRefusal(answer.status)) {
        throw new OrderRejectedByVenueError(rejectionReason(answer), answer.status);
      }
      throw unexpected("place order", answer);
    },
    async lookup(clientOrderId: string, signal?: AbortSignal): Promise<VenueAck | null> {
      const answer = await call(`orders/${encodeURIComponent(clientOrderId)}`, { method: "GET" }, signal);
      if (isSuccess(answer.status) && isAck(answer.body)) return answer.body;
      if (answer.status === 404) return null;
      // Never final: a failed look-up only means "unknown", and the submission that follows classifies.
      throw unexpected("look up order", answer);
    },
  };
}

/** The venue answered "not now": worth another attempt, after Retry-After if it named one. */
function isRetryableStatus(status: number): boolean {
  return (status >= 500 && status <= 599) || status === 429 || status === 408;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status <= 299;
}

/** A 4xx that no retry can fix: the order (or this client's request) is refused. */
function isFinalRefusal(status: number): boolean {
  return status >= 400 && status <= 499 && !isRetryableStatus(status);
}

function unexpected(action: string, answer: Answer): OrderPlacementError {
  const detail = messageOf(answer.body);
  const options = { httpStatus: answer.status, retryAfterMs: answer.retryAfterMs };
  const message = `Failed to ${action} at stock exchange: venue answered HTTP ${answer.status}${detail ? ` (${detail})` : ""}`;
  if (isRetryableStatus(answer.status) || isFinalRefusal(answer.status)) {
    return new OrderPlacementError(message, options);
  }
  return new VenueProtocolError(
    `${message}${isSuccess(answer.status) ? " without an acknowledgement" : ""}: unexpected answer`,
    options,
  );
}

/**
 * Retry-After (RFC 9110 section 10.2.3) in milliseconds: delay-seconds, or an HTTP-date (the time until
 * then, 0 when past). Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // IMF-fixdate, RFC 850 and asctime all start with the day's name; Date.parse reads all three.
  if (!/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The venue's message with its field errors, so the dead-letter reason says what was wrong. 400 and 422
 * are the venue judging the order: its own words. Any other 4xx is about the request, so the reason
 * names the status first ("venue answered HTTP 403: forbidden").
 */
function rejectionReason(answer: Answer): string {
  const venueMessage = messageOf(answer.body);
  const errors = (answer.body as { errors?: unknown } | null)?.errors;
  const details =
    Array.isArray(errors) && errors.length > 0
      ? `: ${errors.map((e: { field?: unknown; message?: unknown }) => `${e?.field} ${e?.message}`).join("; ")}`
      : "";
  if (answer.status === 400 || answer.status === 422) {
    return `${venueMessage ?? `HTTP ${answer.status}`}${details}`;
  }
  return `venue answered HTTP ${answer.status}${venueMessage ? `: ${venueMessage}` : ""}${details}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function messageOf(body: unknown): string | undefined {
  const message = (body as { message?: unknown } | null)?.message;
  return typeof message === "string" && message !== "" ? message : undefined;
}

function isAck(body: unknown): body is VenueAck {
  const ack = body as Partial<VenueAck> | null;
  return typeof ack?.venue_order_id === "string" && typeof ack.duplicate === "boolean";
}
