/**
 * The HTTP API's wiring: the order service, the controller with its authentication and rate limits,
 * the order event feed (WebSocket /orders/events), the OpenAPI document and its page, idempotency-key
 * expiry.
 */
import type { AnyElysia } from "elysia";
import { MongoApiKeyStore } from "../adapters/mongo/api-key-store.ts";
import { MongoExecutionStore } from "../adapters/mongo/execution-store.ts";
import { MongoIdempotencyStore } from "../adapters/mongo/idempotency-store.ts";
import { RedisOrderEventFeed } from "../adapters/order-event-feed.ts";
import { RedisOrderEvents } from "../adapters/order-events.ts";
import { RedisRateLimiter, rateLimitHeaders } from "../adapters/rate-limiter.ts";
import { closeRedis, createRedisConnection, redisTarget } from "../adapters/redis.ts";
import { createAuthenticator } from "../auth/authenticator.ts";
import type { Config } from "../config.ts";
import { uuidV7 } from "../domain/ids.ts";
import { systemClock } from "../domain/ports.ts";
import { type ApiDocumentation, apiDocs } from "../http/api-docs.ts";
import type { Authentication } from "../http/authentication.ts";
import { orderEventsSocket } from "../http/order-events-socket.ts";
import type { RateLimiting } from "../http/rate-limit.ts";
import type { Logger } from "../logger.ts";
import { type AdmissionState, IntakeAdmission } from "../orders/admission.ts";
import { ordersController } from "../orders/index.ts";
import { OrderRequest } from "../orders/model.ts";
import { createOrderService } from "../orders/service.ts";
import { createWithdrawals } from "../orders/withdrawal.ts";
import { every } from "../support/periodic.ts";
import { type Closer, withStartupRetry } from "./lifecycle.ts";
import type { Shared } from "./shared.ts";

/** orders_intake_admission_state's values, as exchange_breaker_state's. */
const ADMISSION_STATES: readonly AdmissionState[] = ["closed", "half-open", "open"];

/** What the API process built that others may use: the publisher of the accounts' event feeds. */
export interface MountedApi {
  orderEvents: RedisOrderEvents;
}

export async function mountApi(
  app: AnyElysia,
  config: Config,
  logger: Logger,
  shared: Shared,
  closers: Closer[],
): Promise<MountedApi> {
  const orderEvents = new RedisOrderEvents(shared.commands, shared.keys, {
    retained: config.ORDER_EVENTS_RETAINED,
    metrics: shared.metrics,
    logger,
  });
  const idempotency = new MongoIdempotencyStore(shared.db, config.MONGO_TIMEOUT_MS);
  await withStartupRetry("idempotency indexes", logger, () => idempotency.ensureIndexes());
  const withdrawals = createWithdrawals({
    orders: shared.orders,
    dispatcher: shared.placementState,
    clock: systemClock,
    events: orderEvents,
    hooks: {
      onFinished: (orderId, result) => {
        shared.metrics.orderWithdrawals.inc({ by: "api", result });
        logger.warn("order answered 500 without an Idempotency-Key withdrawn", { order_id: orderId, result });
      },
      onRetry: (orderId, error) =>
        logger.warn("withdrawal not finished yet; retrying", { order_id: orderId, error }),
      onPendingChanged: (pending) => shared.metrics.orderWithdrawalsPending.set(pending),
    },
  });
  closers.push({ name: "withdrawals", close: () => withdrawals.close() });
  const admission = new IntakeAdmission({
    shedAfterMs: config.INTAKE_SHED_AFTER_MS,
    onShed: () => shared.metrics.ordersShed.inc(),
    onStateChange: (state) => {
      shared.metrics.intakeAdmissionState.set(ADMISSION_STATES.indexOf(state));
      if (state === "open") {
        logger.warn(
          "MongoDB did not answer an intake step within INTAKE_SHED_AFTER_MS: shedding orders (503)",
          {
            shed_after_ms: config.INTAKE_SHED_AFTER_MS,
          },
        );
      } else if (state === "closed") logger.info("MongoDB answers intake again: orders admitted");
    },
  });
  shared.metrics.measureIntakeStoreWait(() => admission.oldestWaitMs());
  const service = createOrderService({
    orders: shared.orders,
    admission,
    idempotency,
    dispatcher: shared.placementState,
    clock: systemClock,
    ids: uuidV7,
    withdrawals,
    events: orderEvents,
    settings: {
      partitions: config.PLACEMENT_PARTITIONS,
      dispatchGraceMs: config.DISPATCH_GRACE_MS,
      idempotencyTtlMs: config.IDEMPOTENCY_TTL_HOURS * 3_600_000,
      idempotencyLeaseMs: config.REQUEST_DEADLINE_MS * 2,
      requestDeadlineMs: config.REQUEST_DEADLINE_MS,
    },
    hooks: {
      onDispatchFailed: (orderId, error) => {
        shared.metrics.dispatchFailures.inc();
        logger.warn("dispatch to the placement stream failed; the sweeper will dispatch it", {
          order_id: orderId,
          error,
        });
      },
      onAmbiguousWrite: (orderId, error, stored) =>
        logger.warn("ambiguous order write, read back", { order_id: orderId, error, stored }),
    },
  });
  const auth = await authenticationFor(config, logger, shared, admission);
  const rateLimiting = rateLimitingFor(config, logger, shared);
  const feed = startOrderEventFeed(app, config, logger, shared, orderEvents, closers);
  app
    .use(
      apiDocs({
        enabled: config.DOCS_ENABLED === "true",
        documentation: apiDocumentation(),
      }),
    )
    // Before the controller: its caller-account step (Authorization header only) is scoped to the app
    // from there on, and would refuse a browser's key sent as a subprotocol.
    .use(
      orderEventsSocket({
        feed,
        latestId: (account) => orderEvents.latestId(account),
        auth,
        rateLimiting,
        logger,
      }),
    )
    .use(
      ordersController({
        service,
        metrics: shared.metrics,
        logger,
        deadlineMs: config.REQUEST_DEADLINE_MS,
        auth,
        rateLimiting,
        executions: new MongoExecutionStore(shared.db, {
          timeoutMs: config.MONGO_TIMEOUT_MS,
          gate: shared.mongoGate,
        }),
      }),
    );
  if (!idempotency.serverExpires) {
    // No TTL index on this server (FerretDB): expire keys ourselves.
    const purge = every(
      60_000,
      () => idempotency.purgeExpired(new Date()),
      (error) => logger.warn("idempotency purge failed", { error }),
    );
    closers.push({ name: "idempotency-purge", close: () => purge.stop() });
  }
  return { orderEvents };
}

/**
 * The process's one subscriber connection and its fan-out to the sockets. Bun's server.stop() waits for
 * every open WebSocket, and the public port's closer (src/process/service.ts) runs before the ones
 * pushed here: the app's stop closes the sockets first, or shutdown would wait on the clients.
 */
function startOrderEventFeed(
  app: AnyElysia,
  config: Config,
  logger: Logger,
  shared: Shared,
  orderEvents: RedisOrderEvents,
  closers: Closer[],
): RedisOrderEventFeed {
  const subscriber = createRedisConnection(redisTarget(config), {
    name: "orders-api-events",
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  subscriber.on("error", () => {}); // reconnects by itself; the feed catches its sockets up when it is back
  closers.push({ name: "order-events-subscriber", close: () => closeRedis(subscriber) });
  const feed = new RedisOrderEventFeed(subscriber, orderEvents, shared.keys.orderEventsChannel, {
    onSubscribersChanged: (count) => shared.metrics.orderEventSubscribers.set(count),
    onSubscribeFailed: (error) =>
      logger.warn("order events: SUBSCRIBE failed; retried when Redis is back", { error }),
  });
  feed.start();
  closers.push({ name: "order-events", close: () => feed.close() });
  const stop = app.stop.bind(app);
  app.stop = (closeActiveConnections?: boolean) => {
    feed.close();
    return stop(closeActiveConnections);
  };
  return feed;
}

async function authenticationFor(
  config: Config,
  logger: Logger,
  shared: Shared,
  admission: IntakeAdmission,
): Promise<Authentication> {
  if (config.AUTH_MODE === "off") {
    logger.warn(
      "AUTH_MODE=off: every request is served without an API key, as one account; never in production",
    );
    return { mode: "off" };
  }
  const keys = new MongoApiKeyStore(shared.db, { timeoutMs: config.MONGO_TIMEOUT_MS });
  await withStartupRetry("api key indexes", logger, () => keys.ensureIndexes());
  // A key look-up is a MongoDB step on the way to an order: one that hangs is a store not keeping up.
  const lookup = { findByToken: (token: string) => admission.track(() => keys.findByToken(token)) };
  const authenticator = createAuthenticator(lookup, { cacheTtlMs: config.AUTH_CACHE_TTL_MS });
  return { mode: "api-key", resolve: (header) => authenticator.authenticate(header) };
}

function rateLimitingFor(config: Config, logger: Logger, shared: Shared): RateLimiting | null {
  if (config.RATE_LIMIT_PER_SECOND === 0) return null;
  const policy = { ratePerSecond: config.RATE_LIMIT_PER_SECOND, burst: config.RATE_LIMIT_BURST };
  const limiter = new RedisRateLimiter(shared.commands, shared.keys, policy);
  return {
    limiter: {
      async check(account) {
        const decision = await limiter.take(account);
        return {
          allowed: decision.allowed,
          retryAfterSeconds: Math.max(1, Math.ceil(decision.retryAfterSeconds)),
          headers: rateLimitHeaders(decision, policy),
        };
      },
    },
    onUnavailable: (error) => {
      shared.metrics.rateLimitUnavailable.inc();
      logger.debug("rate limiter unavailable; request let through", { error });
    },
  };
}

/**
 * The OpenAPI document's own fields; the /orders operations come from their routes
 * (src/orders/documentation.ts); the operations routes are on OPS_PORT, not in this document. One quirk
 * of @elysiajs/swagger 1.3.1 is fixed here, in the document:
 * - a model is published as the TypeBox schema it is, with Elysia's `error` option (the words of a field
 *   error, read by src/orders/validation.ts), which is no OpenAPI keyword: OrderRequest is published
 *   without it.
 * redocly.yaml and test/integration/openapi-document.test.ts lint the document as served.
 */
function apiDocumentation(): ApiDocumentation {
  return {
    info: {
      title: "Order placement API",
      version: "1.0.0",
      description:
        "Place stock orders. A 201 means the order is stored durably and its placement at the exchange is guaranteed. Every request needs an API key: `Authorization: Bearer <key>` (created with `orders keys create`).",
    },
    tags: [{ name: "orders", description: "Place, list and read the caller's orders" }],
    // Relative, so the document is right wherever it is served from; empty, not "/": a client appends
    // each path to it ("/" + "/orders" is "//orders", which Scalar's client sent).
    servers: [{ url: "", description: "This deployment (where this document is served)" }],
    components: {
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description: "An API key made by `orders keys create --account NAME`",
        },
      },
      schemas: { OrderRequest: withoutValidatorOptions(OrderRequest) as SchemaObject },
    },
    security: [{ bearerAuth: [] }],
  };
}

type Schemas = NonNullable<NonNullable<ApiDocumentation["components"]>["schemas"]>;
type SchemaObject = Exclude<Schemas[string], { $ref: string }>;

/** Keys of the TypeBox options that only the validator reads and OpenAPI does not know. */
const VALIDATOR_OPTIONS = new Set(["error"]);
/** Schema keywords whose values are data, not subschemas. */
const DATA_KEYWORDS = new Set(["examples", "example", "const", "enum", "default"]);

/**
 * A schema without validator-only options, at any depth of subschemas; the names of `properties` and
 * the values of `examples`, `const`, `enum` and `default` are data and are kept as they are.
 */
function withoutValidatorOptions(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutValidatorOptions);
  if (typeof schema !== "object" || schema === null) return schema;
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (VALIDATOR_OPTIONS.has(key)) continue;
    if (key === "properties" && typeof value === "object" && value !== null) {
      copy[key] = Object.fromEntries(
        Object.entries(value).map(([name, property]) => [name, withoutValidatorOptions(property)]),
      );
    } else if (DATA_KEYWORDS.has(key)) {
      copy[key] = value;
    } else {
      copy[key] = withoutValidatorOptions(value);
    }
  }
  return copy;
}
