/** One error class per failure, each with a stable code and, where it reaches HTTP, a status. */

export interface FieldError {
  field: string;
  message: string;
}

export class OrderValidationError extends Error {
  readonly code = "ORDER_INVALID";
  readonly status = 422;
  constructor(readonly errors: FieldError[]) {
    super(`invalid order: ${errors.map((e) => `${e.field} ${e.message}`).join("; ")}`);
    this.name = "OrderValidationError";
  }
}

export class IdempotencyKeyReusedError extends Error {
  readonly code = "IDEMPOTENCY_KEY_REUSED";
  readonly status = 422;
  constructor() {
    super("Idempotency-Key was already used with a different request body");
    this.name = "IdempotencyKeyReusedError";
  }
}

export class IdempotencyKeyInFlightError extends Error {
  readonly code = "IDEMPOTENCY_KEY_IN_FLIGHT";
  readonly status = 409;
  constructor() {
    super("A request with this Idempotency-Key is still in progress; retry later");
    this.name = "IdempotencyKeyInFlightError";
  }
}

export class OrderNotFoundError extends Error {
  readonly code = "ORDER_NOT_FOUND";
  readonly status = 404;
  constructor(readonly orderId: string) {
    super("Order not found");
    this.name = "OrderNotFoundError";
  }
}

/** The request body cannot be read as an order (not JSON, too large, malformed): nothing is stored. */
export class RequestBodyRejectedError extends Error {
  readonly code = "REQUEST_BODY_REJECTED";
  constructor(
    readonly status: 413 | 415 | 422,
    readonly errors: FieldError[],
    message: string,
  ) {
    super(message);
    this.name = "RequestBodyRejectedError";
  }
}

/** No API key, or one that is unknown or revoked. `reason` says which (for WWW-Authenticate). */
export class UnauthenticatedError extends Error {
  readonly code = "UNAUTHENTICATED";
  readonly status = 401;
  constructor(readonly reason: "missing" | "invalid") {
    super(
      reason === "missing"
        ? "An API key is required: send Authorization: Bearer <key>"
        : "The API key is unknown or revoked",
    );
    this.name = "UnauthenticatedError";
  }
}

/** The account sent more requests than its rate allows; `retryAfterSeconds` says when to come back. */
export class RateLimitedError extends Error {
  readonly code = "RATE_LIMITED";
  readonly status = 429;
  constructor(readonly retryAfterSeconds: number) {
    super(`Too many requests; retry after ${retryAfterSeconds} s`);
    this.name = "RateLimitedError";
  }
}

/**
 * POST /orders refused before anything was stored, because the order store is not keeping up
 * (src/orders/admission.ts): 503 with Retry-After; a retry, with or without an Idempotency-Key, is safe.
 */
export class IntakeOverloadedError extends Error {
  readonly code = "INTAKE_OVERLOADED";
  readonly status = 503;
  constructor(readonly retryAfterSeconds: number) {
    super(`The order store is not keeping up; nothing was stored. Retry after ${retryAfterSeconds} s`);
    this.name = "IntakeOverloadedError";
  }
}

/** The request took longer than its deadline; the client gets the 500 body and may retry with its key. */
export class DeadlineExceededError extends Error {
  readonly code = "DEADLINE_EXCEEDED";
  constructor(readonly deadlineMs: number) {
    super(`request deadline of ${deadlineMs} ms exceeded`);
    this.name = "DeadlineExceededError";
  }
}

/** Placement failures, classified where they happen (docs/ARCHITECTURE.md guarantee 4). */

export interface OrderPlacementErrorOptions extends ErrorOptions {
  /**
   * The venue asked for this long a pause before the next attempt (the Retry-After of a 429 or 503
   * answer, in milliseconds from when the answer arrived). Absent when it named none.
   */
  retryAfterMs?: number;
  /** The venue's HTTP status, when the failure is an answer (absent for transport failures). */
  httpStatus?: number;
}

/**
 * Transport failure at the venue, or an answer that says "not now" (5xx, 429, 408): retried with
 * backoff, counted by the circuit breaker.
 */
export class OrderPlacementError extends Error {
  readonly code = "ORDER_PLACEMENT_FAILED";
  readonly retryable = true;
  /** The venue's Retry-After: the next attempt should not come sooner. */
  readonly retryAfterMs?: number;
  readonly httpStatus?: number;
  constructor(
    message = "Failed to place order at stock exchange. Connection not available",
    options?: OrderPlacementErrorOptions,
  ) {
    super(message, options);
    this.name = "OrderPlacementError";
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    if (options?.httpStatus !== undefined) this.httpStatus = options.httpStatus;
  }
}

/**
 * The venue answered something this client does not understand (a success without an acknowledgement,
 * a redirect, an informational or unknown status). Retryable: the order may or may not be recorded at
 * the venue, and the look-up before the next submission plus the client order id make the retry safe.
 * Counted by the breaker like a transport failure; if it persists, the order stays unfinished and the
 * end-to-end alarm (OrderUnfinishedTooLong) fires.
 */
export class VenueProtocolError extends OrderPlacementError {
  override readonly code = "VENUE_PROTOCOL_ERROR" as "ORDER_PLACEMENT_FAILED";
  constructor(message: string, options?: OrderPlacementErrorOptions) {
    super(message, options);
    this.name = "VenueProtocolError";
  }
}

/** The venue refused the order for a reason that retrying cannot fix. Final; not a breaker failure. */
export class OrderRejectedByVenueError extends Error {
  readonly code = "ORDER_REJECTED_BY_VENUE";
  readonly retryable = false;
  constructor(
    readonly reason: string,
    /** The venue's HTTP status (a 4xx), when the refusal came over HTTP. */
    readonly httpStatus?: number,
  ) {
    super(`order rejected by the venue: ${reason}`);
    this.name = "OrderRejectedByVenueError";
  }
}

/** placeOrder called without an order: a bug, never retried. */
export class PlaceOrderArgumentError extends TypeError {
  readonly code = "PLACE_ORDER_ARGUMENT";
  readonly retryable = false;
  constructor() {
    super("placeOrder requires an order");
    this.name = "PlaceOrderArgumentError";
  }
}

export function isRetryable(error: unknown): boolean {
  return (error as { retryable?: unknown } | null)?.retryable !== false;
}
