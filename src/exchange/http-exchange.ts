/**
 * The exchange reached over HTTP (EXCHANGE_URL): the client of venueRoutes in venue.ts. Failures are
 * classified here, where they happen:
 * - 400/422: the venue refused the order itself -> OrderRejectedByVenueError (final);
 * - any other answer that is not the expected success, a network error, a malformed body or the
 *   backstop timeout -> OrderPlacementError (retryable, the original error kept as `cause`);
 * - the caller's signal aborted -> its reason, unwrapped, so the caller's timeout classification
 *   sees its own error. Whether an aborted submission reached the venue is unknown; `lookup` tells.
 */
import { OrderPlacementError, OrderRejectedByVenueError } from "../domain/errors.ts";
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
        signal: signal ? AbortSignal.any([signal, backstop]) : backstop,
      });
      const text = await response.text();
      return { status: response.status, body: parseJson(text) };
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
      if (answer.status === 201 && isAck(answer.body)) return answer.body;
      if (answer.status === 400 || answer.status === 422) {
        throw new OrderRejectedByVenueError(rejectionReason(answer));
      }
      throw unexpected("place order", answer);
    },
    async lookup(clientOrderId: string, signal?: AbortSignal): Promise<VenueAck | null> {
      const answer = await call(`orders/${encodeURIComponent(clientOrderId)}`, { method: "GET" }, signal);
      if (answer.status === 200 && isAck(answer.body)) return answer.body;
      if (answer.status === 404) return null;
      throw unexpected("look up order", answer);
    },
  };
}

function unexpected(action: string, answer: Answer): OrderPlacementError {
  const detail = messageOf(answer.body);
  return new OrderPlacementError(
    `Failed to ${action} at stock exchange: venue answered HTTP ${answer.status}${detail ? ` (${detail})` : ""}`,
  );
}

/** The venue's message with its field errors, so the dead-letter reason says what was wrong. */
function rejectionReason(answer: Answer): string {
  const message = messageOf(answer.body) ?? `HTTP ${answer.status}`;
  const errors = (answer.body as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return message;
  const details = errors.map((e: { field?: unknown; message?: unknown }) => `${e?.field} ${e?.message}`);
  return `${message}: ${details.join("; ")}`;
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
