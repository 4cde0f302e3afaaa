/** The /orders controller: HTTP in and out only; the rules live in validation.ts and service.ts. */
import type { TSchema } from "@sinclair/typebox";
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";
import {
  DeadlineExceededError,
  type FieldError,
  IdempotencyKeyReusedError,
  OrderNotFoundError,
  OrderValidationError,
} from "../domain/errors.ts";
import { type Cents, centsToNumber } from "../domain/money.ts";
import type { OrderRecord } from "../domain/order.ts";
import type { Logger } from "../logger.ts";
import {
  IDEMPOTENCY_KEY_PATTERN,
  INTERNAL_ERROR_BODY,
  LIMIT_EXAMPLE,
  MARKET_EXAMPLE,
  MAX_BODY_BYTES,
  MessageResponse,
  NOT_FOUND_BODY,
  OrderDetailResponse,
  OrderRequest,
  OrderResponse,
  ValidationErrorResponse,
} from "./model.ts";
import type { OrderService } from "./service.ts";
import { validateOrderRequest } from "./validation.ts";

class RequestRejected extends Error {
  constructor(
    readonly status: number,
    readonly errors: FieldError[],
    message: string,
  ) {
    super(message);
  }
}

export function ordersController(deps: {
  service: OrderService;
  metrics: Metrics;
  logger: Logger;
  deadlineMs: number;
}) {
  const { service, metrics, logger, deadlineMs } = deps;

  return new Elysia({ name: "orders-controller" })
    .post(
      "/orders",
      async ({ request, set }) => {
        const requestId = request.headers.get("x-request-id") ?? crypto.randomUUID();
        set.headers["x-request-id"] = requestId;
        // Set by the service once an order id is in play; read by the 500 answer (even on the deadline).
        const intake: { orderId?: string } = {};
        try {
          const key = readIdempotencyKey(request);
          const draft = validateOrderRequest(await readJsonBody(request));
          const placing = service.place(draft, key, {
            onOrderId: (orderId) => {
              intake.orderId = orderId;
            },
          });
          const { order, replayed } = await withDeadline(placing, deadlineMs);
          if (replayed) {
            set.headers["idempotent-replayed"] = "true";
            metrics.ordersReplayed.inc();
          } else {
            metrics.ordersAccepted.inc();
          }
          set.status = 201;
          set.headers.location = `/orders/${order._id}`;
          logger.debug("order accepted", { order_id: order._id, request_id: requestId, replayed });
          return toResponse(order);
        } catch (error) {
          return answerError(error, set, requestId, intake.orderId);
        }
      },
      {
        parse: "none",
        detail: {
          tags: ["orders"],
          summary: "Place an order",
          description:
            "Stores the order durably (MongoDB, write concern majority + journal) and guarantees its placement at the exchange, which happens asynchronously. Send an Idempotency-Key to retry safely.",
          parameters: [
            {
              name: "Idempotency-Key",
              in: "header",
              required: false,
              description:
                "1-255 printable ASCII characters; a retry with the same key and body returns the first order",
              schema: { type: "string", minLength: 1, maxLength: 255 },
            },
          ],
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: openApiSchema(OrderRequest),
                examples: { market: { value: MARKET_EXAMPLE }, limit: { value: LIMIT_EXAMPLE } },
              },
            },
          },
          responses: {
            201: jsonResponse("The order is stored and its placement is guaranteed", OrderResponse),
            409: jsonResponse(
              "A request with the same Idempotency-Key is still in progress",
              MessageResponse,
            ),
            413: jsonResponse("The body is larger than 16 KiB", ValidationErrorResponse),
            415: jsonResponse("The body is not sent as application/json", ValidationErrorResponse),
            422: jsonResponse(
              "The body breaks a rule (every bad field is named), or the Idempotency-Key was used with another body; nothing is stored",
              ValidationErrorResponse,
            ),
            500: {
              ...jsonResponse(
                'Internal error; the body is exactly {"message": "Internal server error while placing the order"}. The order may have been stored: retry with the same Idempotency-Key, or look up the X-Order-Id',
                MessageResponse,
              ),
              headers: {
                "X-Order-Id": {
                  description:
                    "The id the order would have, present once the service tried to store it: GET /orders/{id} tells whether it was stored (and will be placed)",
                  schema: { type: "string", format: "uuid" },
                },
              },
            },
          },
        },
      },
    )
    .get(
      "/orders/:id",
      async ({ params, set, request }) => {
        const requestId = request.headers.get("x-request-id") ?? crypto.randomUUID();
        try {
          return toDetailResponse(await withDeadline(service.get(params.id), deadlineMs));
        } catch (error) {
          if (error instanceof OrderNotFoundError) {
            set.status = 404;
            return NOT_FOUND_BODY;
          }
          logger.error("order lookup failed", { order_id: params.id, request_id: requestId, error });
          set.status = 500;
          return { message: "Internal server error" };
        }
      },
      {
        detail: {
          tags: ["orders"],
          summary: "An order with its placement state",
          responses: {
            200: jsonResponse("The order", OrderDetailResponse),
            404: jsonResponse('Unknown id: {"message": "Order not found"}', MessageResponse),
          },
        },
      },
    );

  function answerError(
    error: unknown,
    set: { status?: number | string; headers: Record<string, unknown> },
    requestId: string,
    orderId: string | undefined,
  ) {
    if (error instanceof RequestRejected) {
      metrics.ordersValidationRejected.inc({ reason: String(error.status) });
      set.status = error.status;
      return { message: error.message, errors: error.errors };
    }
    if (error instanceof OrderValidationError) {
      metrics.ordersValidationRejected.inc({ reason: "422" });
      set.status = 422;
      return { message: "The order is invalid", errors: error.errors };
    }
    if (error instanceof IdempotencyKeyReusedError) {
      metrics.ordersValidationRejected.inc({ reason: "422" });
      set.status = 422;
      // Every 422 has the documented shape and names the field at fault: here the header.
      return { message: error.message, errors: [{ field: "Idempotency-Key", message: error.message }] };
    }
    const status = (error as { status?: unknown }).status;
    if (status === 409 || status === 422) {
      metrics.ordersValidationRejected.inc({ reason: String(status) });
      set.status = status;
      return { message: (error as Error).message };
    }
    const cause = error instanceof DeadlineExceededError ? "deadline" : ((error as Error)?.name ?? "unknown");
    metrics.ordersInternalErrors.inc({ cause });
    logger.error("order intake failed", { request_id: requestId, order_id: orderId, error });
    set.status = 500;
    // "Maybe stored": the client can find out under this id, even without an Idempotency-Key.
    if (orderId !== undefined) set.headers["x-order-id"] = orderId;
    return INTERNAL_ERROR_BODY;
  }
}

/** TypeBox schemas are JSON Schema; OpenAPI's types just do not know TypeBox's symbol keys. */
function openApiSchema(schema: TSchema): never {
  return schema as never;
}

function jsonResponse(description: string, schema: TSchema) {
  return { description, content: { "application/json": { schema: openApiSchema(schema) } } };
}

function readIdempotencyKey(request: Request): string | null {
  const key = request.headers.get("idempotency-key");
  if (key === null) return null;
  if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
    throw new RequestRejected(
      422,
      [{ field: "Idempotency-Key", message: "must be 1-255 printable ASCII characters" }],
      "The Idempotency-Key header is invalid",
    );
  }
  return key;
}

async function readJsonBody(request: Request): Promise<unknown> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(contentType)) {
    throw new RequestRejected(
      415,
      [{ field: "content-type", message: "must be application/json" }],
      "The body must be JSON",
    );
  }
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > MAX_BODY_BYTES) throw tooLarge();
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new RequestRejected(
      422,
      [{ field: "body", message: "is not valid JSON" }],
      "The body is not valid JSON",
    );
  }
}

function tooLarge() {
  return new RequestRejected(
    413,
    [{ field: "body", message: `must be at most ${MAX_BODY_BYTES} bytes` }],
    "The body is too large",
  );
}

function withDeadline<T>(work: Promise<T>, deadlineMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(deadlineMs)), deadlineMs);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

export function toResponse(order: OrderRecord) {
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

function toDetailResponse(order: OrderRecord) {
  return {
    ...toResponse(order),
    attempts: order.attempts,
    placed_at: order.placed_at ? order.placed_at.toISOString() : null,
    rejection_reason: order.rejection_reason,
    executions: [],
  };
}
