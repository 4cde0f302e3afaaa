/** The HTTP API's wiring: the order service, the controller, its OpenAPI document, key expiry. */
import { swagger } from "@elysiajs/swagger";
import type { AnyElysia } from "elysia";
import { MongoIdempotencyStore } from "../adapters/mongo/idempotency-store.ts";
import type { Config } from "../config.ts";
import { uuidV7 } from "../domain/ids.ts";
import { systemClock } from "../domain/ports.ts";
import type { Logger } from "../logger.ts";
import { ordersController } from "../orders/index.ts";
import { createOrderService } from "../orders/service.ts";
import { every } from "../support/periodic.ts";
import { type Closer, withStartupRetry } from "./lifecycle.ts";
import type { Shared } from "./shared.ts";

export async function mountApi(
  app: AnyElysia,
  config: Config,
  logger: Logger,
  shared: Shared,
  closers: Closer[],
): Promise<void> {
  const idempotency = new MongoIdempotencyStore(shared.db, config.MONGO_TIMEOUT_MS);
  await withStartupRetry("idempotency indexes", logger, () => idempotency.ensureIndexes());
  const service = createOrderService({
    orders: shared.orders,
    idempotency,
    dispatcher: shared.placementState,
    clock: systemClock,
    ids: uuidV7,
    settings: {
      partitions: config.PLACEMENT_PARTITIONS,
      dispatchGraceMs: config.DISPATCH_GRACE_MS,
      idempotencyTtlMs: config.IDEMPOTENCY_TTL_HOURS * 3_600_000,
      idempotencyLeaseMs: config.REQUEST_DEADLINE_MS * 2,
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
  app
    .use(
      swagger({
        path: "/swagger",
        exclude: ["/swagger", "/swagger/json"],
        documentation: {
          info: {
            title: "Order placement API",
            version: "1.0.0",
            description:
              "Place stock orders. A 201 means the order is stored durably and its placement at the exchange is guaranteed.",
          },
          tags: [{ name: "orders" }, { name: "operations" }],
        },
      }),
    )
    .use(
      ordersController({
        service,
        metrics: shared.metrics,
        logger,
        deadlineMs: config.REQUEST_DEADLINE_MS,
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
}
