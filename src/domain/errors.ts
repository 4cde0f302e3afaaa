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

/** The request took longer than its deadline; the client gets the 500 body and may retry with its key. */
export class DeadlineExceededError extends Error {
  readonly code = "DEADLINE_EXCEEDED";
  constructor(readonly deadlineMs: number) {
    super(`request deadline of ${deadlineMs} ms exceeded`);
    this.name = "DeadlineExceededError";
  }
}

/** Placement failures, classified where they happen (docs/ARCHITECTURE.md guarantee 4). */

/** Transport failure at the venue: retried with backoff, counted by the circuit breaker. */
export class OrderPlacementError extends Error {
  readonly code = "ORDER_PLACEMENT_FAILED";
  readonly retryable = true;
  constructor(
    message = "Failed to place order at stock exchange. Connection not available",
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "OrderPlacementError";
  }
}

/** The venue refused the order for a reason that retrying cannot fix. Final; not a breaker failure. */
export class OrderRejectedByVenueError extends Error {
  readonly code = "ORDER_REJECTED_BY_VENUE";
  readonly retryable = false;
  constructor(readonly reason: string) {
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
