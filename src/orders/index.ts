/**
 * The /orders controller: HTTP in and out only. Elysia validates the body, headers and query against
 * the schemas of model.ts; validation.ts adds what a schema cannot say; service.ts holds the rules.
 * Every error becomes its documented answer in one place (`onError`), the exact 500 body included.
 */
import { Elysia, ValidationError } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";
import {
  DeadlineExceededError,
  type FieldError,
  IdempotencyKeyInFlightError,
  IdempotencyKeyReusedError,
  IntakeOverloadedError,
  OrderNotFoundError,
  OrderValidationError,
  RateLimitedError,
  RequestBodyRejectedError,
  UnauthenticatedError,
} from "../domain/errors.ts";
import { averagePriceCents, type StoredExecution } from "../domain/execution.ts";
import { type Cents, centsToNumber } from "../domain/money.ts";
import type { OrderRecord } from "../domain/order.ts";
import { type Authentication, authenticate, bearerChallenge, callerAccount } from "../http/authentication.ts";
import type { RateLimiting } from "../http/rate-limit.ts";
import { requestId } from "../http/request-id.ts";
import type { Logger } from "../logger.ts";
import { withDeadline } from "../support/deadline.ts";
import { orderRoutesDocumentation } from "./documentation.ts";
import {
  INTERNAL_ERROR_BODY,
  MAX_BODY_BYTES,
  MessageResponse,
  NOT_FOUND_BODY,
  OrderDetailResponse,
  OrderListQuery,
  OrderListResponse,
  OrderRequest,
  OrderRequestHeaders,
  OrderResponse,
  ValidationErrorResponse,
} from "./model.ts";
import type { OrderService } from "./service.ts";
import { describe, describeBodyErrors, toDraft, topLevelField } from "./validation.ts";

const JSON_MEDIA_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i;

/** Header names as the contract spells them, for the `field` of a header's 422. */
const HEADER_FIELDS: Record<string, string> = { "idempotency-key": "Idempotency-Key" };

export interface OrdersControllerDeps {
  service: OrderService;
  metrics: Metrics;
  logger: Logger;
  deadlineMs: number;
  auth: Authentication;
  rateLimiting: RateLimiting | null;
  /** The executions of orders (src/adapters/mongo/execution-store.ts); none listed without it. */
  executions?: ExecutionReader;
}

export interface ExecutionReader {
  executionsOf(orderIds: readonly string[]): Promise<Map<string, StoredExecution[]>>;
}

export function ordersController(deps: OrdersControllerDeps) {
  const { service, metrics, logger, deadlineMs } = deps;
  const docs = orderRoutesDocumentation();

  /** The orders with their executions: one read for those that have any, none for the rest. */
  async function detailed(orders: OrderRecord[]): Promise<OrderDetailResponse[]> {
    const executed = orders.filter((order) => (order.execution_count ?? 0) > 0).map((order) => order._id);
    const executions =
      deps.executions && executed.length > 0 ? await deps.executions.executionsOf(executed) : new Map();
    return orders.map((order) => toDetailResponse(order, executions.get(order._id) ?? []));
  }

  return new Elysia({ name: "orders-controller", normalize: false })
    .use(requestId())
    .model({
      OrderRequest,
      Order: OrderResponse,
      OrderDetail: OrderDetailResponse,
      OrderList: OrderListResponse,
      ValidationError: ValidationErrorResponse,
      Message: MessageResponse,
    })
    .onError({ as: "scoped" }, ({ error, code, set, request, requestId }) => {
      const isIntake = request.method === "POST";
      const answer = answerFor(error, code);
      if (answer) {
        if (answer.status < 500) metrics.ordersValidationRejected.inc({ reason: String(answer.status) });
        set.status = answer.status;
        Object.assign(set.headers, answer.headers);
        return answer.body;
      }
      if (isIntake) {
        const cause =
          error instanceof DeadlineExceededError ? "deadline" : ((error as Error)?.name ?? "unknown");
        metrics.ordersInternalErrors.inc({ cause });
      }
      logger.error(isIntake ? "order intake failed" : "order lookup failed", {
        request_id: requestId,
        order_id: set.headers["x-order-id"],
        error,
      });
      set.status = 500;
      return isIntake ? INTERNAL_ERROR_BODY : { message: "Internal server error" };
    })
    .use(callerAccount(deps.auth, deps.rateLimiting))
    .post(
      "/orders",
      async ({ body, headers, account, set, status, requestId }) => {
        const draft = toDraft(body);
        // Within REQUEST_DEADLINE_MS: the service keeps the deadline (and withdraws what it gives up).
        const { order, replayed } = await service.place(
          { draft, idempotencyKey: headers["idempotency-key"] ?? null, account },
          {
            // "Maybe stored" from here on: a 500 tells the client the id to look up, even without a key.
            onOrderId: (orderId) => {
              set.headers["x-order-id"] = orderId;
            },
          },
        );
        delete set.headers["x-order-id"];
        if (replayed) {
          set.headers["idempotent-replayed"] = "true";
          metrics.ordersReplayed.inc();
        } else {
          metrics.ordersAccepted.inc();
        }
        set.headers.location = `/orders/${order._id}`;
        logger.debug("order accepted", { order_id: order._id, request_id: requestId, replayed });
        return status(201, toResponse(order));
      },
      {
        // The caller first (no body is read for a request without a valid key), then the body.
        // readOrderJson always answers or throws; "application/json" after it is never reached and is
        // there for the OpenAPI document, which names the request's media type after it.
        parse: [
          async ({ request }) => {
            // Load shedding first: while the store does not answer, not even the key is looked up there.
            service.admit();
            await authenticate(deps.auth, request.headers.get("authorization"));
            return readOrderJson(request);
          },
          "application/json",
        ],
        headers: OrderRequestHeaders,
        body: "OrderRequest",
        response: { 201: "Order" },
        detail: docs.placeOrder,
      },
    )
    .get(
      "/orders",
      async ({ query, account }) => {
        const page = await withDeadline(
          service
            .list(account, { status: query.status, before: query.cursor, limit: query.limit ?? 50 })
            .then(async (found) => ({ orders: await detailed(found.orders), next: found.next })),
          deadlineMs,
        );
        return { orders: page.orders, next_cursor: page.next };
      },
      { query: OrderListQuery, response: { 200: "OrderList" }, detail: docs.listOrders },
    )
    .get(
      "/orders/:id",
      async ({ params, account }) => {
        const [order] = await withDeadline(
          service.get(params.id, account).then((found) => detailed([found])),
          deadlineMs,
        );
        return order as OrderDetailResponse;
      },
      { response: { 200: "OrderDetail" }, detail: docs.getOrder },
    );
}

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The documented answer of a client error; undefined for an internal one (the 500). */
function answerFor(error: unknown, code: unknown): Answer | undefined {
  if (error instanceof ValidationError) return validationAnswer(error);
  // Elysia hands a parser's error on as the cause of its ParseError.
  const cause = (error as Error).cause;
  if (
    code === "PARSE" &&
    (cause instanceof RequestBodyRejectedError ||
      cause instanceof UnauthenticatedError ||
      cause instanceof IntakeOverloadedError)
  ) {
    return answerFor(cause, undefined);
  }
  if (code === "NOT_FOUND") return { status: 404, body: { message: "Not found" } };
  if (error instanceof RequestBodyRejectedError) return rejected(error.status, error.message, error.errors);
  if (error instanceof OrderValidationError) return rejected(422, "The order is invalid", error.errors);
  if (error instanceof IdempotencyKeyReusedError) {
    // Every 422 has the documented shape and names the field at fault: here the header.
    return rejected(422, error.message, [{ field: "Idempotency-Key", message: error.message }]);
  }
  if (error instanceof IdempotencyKeyInFlightError) return { status: 409, body: { message: error.message } };
  if (error instanceof OrderNotFoundError) return { status: 404, body: NOT_FOUND_BODY };
  if (error instanceof UnauthenticatedError) {
    return {
      status: 401,
      body: { message: error.message },
      headers: { "www-authenticate": bearerChallenge(error) },
    };
  }
  if (error instanceof RateLimitedError) return { status: 429, body: { message: error.message } };
  if (error instanceof IntakeOverloadedError) {
    return {
      status: 503,
      body: { message: error.message },
      headers: { "retry-after": String(error.retryAfterSeconds) },
    };
  }
  return undefined;
}

function validationAnswer(error: ValidationError): Answer {
  if (error.type === "body") {
    return rejected(422, "The order is invalid", describeBodyErrors(error.all, error.value));
  }
  if (error.type === "params") return { status: 404, body: NOT_FOUND_BODY };
  const errors = error.all.map((e) => {
    const name = topLevelField(e.path);
    return { field: HEADER_FIELDS[name] ?? name, message: describe(e) };
  });
  const what = error.type === "headers" ? "A header is invalid" : "A query parameter is invalid";
  return rejected(422, what, errors);
}

function rejected(status: number, message: string, errors: FieldError[]): Answer {
  return { status, body: { message, errors } };
}

/**
 * The body of POST /orders: JSON by media type, at most 16 KiB (counted as read, so a streamed body
 * without a content-length is stopped too), strict UTF-8.
 */
async function readOrderJson(request: Request): Promise<unknown> {
  if (!JSON_MEDIA_TYPE.test(request.headers.get("content-type") ?? "")) {
    throw new RequestBodyRejectedError(
      415,
      [{ field: "content-type", message: "must be application/json" }],
      "The body must be JSON",
    );
  }
  const tooLarge = new RequestBodyRejectedError(
    413,
    [{ field: "body", message: `must be at most ${MAX_BODY_BYTES} bytes` }],
    "The body is too large",
  );
  if (Number(request.headers.get("content-length") ?? "0") > MAX_BODY_BYTES) throw tooLarge;
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > MAX_BODY_BYTES) throw tooLarge;
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new RequestBodyRejectedError(
      422,
      [{ field: "body", message: "is not valid JSON" }],
      "The body is not valid JSON",
    );
  }
}

export function toResponse(order: OrderRecord): OrderResponse {
  return {
    id: order._id,
    created_at: order.created_at.toISOString(),
    type: order.type,
    side: order.side,
    instrument: order.instrument,
    limit_price: order.limit_price_cents === null ? null : centsToNumber(order.limit_price_cents as Cents),
    quantity: order.quantity,
    status: order.status,
  };
}

function toDetailResponse(order: OrderRecord, executions: StoredExecution[]): OrderDetailResponse {
  return {
    ...toResponse(order),
    attempts: order.attempts,
    placed_at: order.placed_at ? order.placed_at.toISOString() : null,
    rejection_reason: order.rejection_reason,
    filled_quantity: order.filled_quantity ?? 0,
    average_price: averagePrice(order),
    executions: executions
      .filter((execution) => execution.flagged === null)
      .map((execution) => ({
        exec_id: execution._id,
        exec_type: execution.exec_type,
        quantity: execution.quantity,
        price: execution.price_cents === null ? null : centsToNumber(execution.price_cents as Cents),
        executed_at: execution.executed_at.toISOString(),
      })),
  };
}

/** In currency units, rounded to 4 decimals: an average of cent prices need not be whole cents. */
function averagePrice(order: OrderRecord): number | null {
  const cents = averagePriceCents({
    filled_quantity: order.filled_quantity ?? 0,
    filled_notional_cents: order.filled_notional_cents ?? 0,
  });
  return cents === null ? null : Math.round(cents * 100) / 10_000;
}
