import { Elysia } from "elysia";
import { createMetrics } from "../adapters/metrics.ts";
import type { Config } from "../config.ts";
import { createExecutionFeed } from "../exchange/execution-feed.ts";
import { createVenue } from "../exchange/venue.ts";
import { venueRoutes } from "../exchange/venue-routes.ts";
import { httpMetrics } from "../http/http-metrics.ts";
import { opsRoutes } from "../http/ops-routes.ts";
import type { Logger } from "../logger.ts";
import { listen, once, type RunningProcess } from "./lifecycle.ts";

/** The simulated venue: no MongoDB or Redis, always ready. */
export async function startExchange(config: Config, logger: Logger): Promise<RunningProcess> {
  const metrics = createMetrics("exchange");
  const feed = createExecutionFeed({
    settings: {
      fillsPerOrder: config.EXCHANGE_FILLS_PER_ORDER,
      fillDelayMs: config.EXCHANGE_FILL_DELAY_MS,
      limitUnfilledRate: config.EXCHANGE_LIMIT_UNFILLED_RATE,
    },
    onReport: (report) => metrics.venueExecutionReports.inc({ exec_type: report.exec_type }),
  });
  const venue = createVenue({
    failureRate: config.EXCHANGE_FAILURE_RATE,
    latencyMs: config.EXCHANGE_LATENCY_MS,
    onAcknowledged: (order, venueOrderId) => feed.acknowledged(order, venueOrderId),
  });
  const ops = new Elysia().use(opsRoutes(metrics, []));
  const app = new Elysia()
    .use(httpMetrics(metrics))
    .use(venueRoutes(venue, metrics, { adminToken: config.EXCHANGE_ADMIN_TOKEN, feed }));
  feed.start();
  const opsPort = listen(ops, config.OPS_PORT, logger, { kind: "exchange", surface: "operations" });
  const port = listen(app, config.PORT, logger, { kind: "exchange", surface: "public" });
  return {
    port,
    opsPort,
    handle: (request) => app.handle(request),
    handleOps: (request) => ops.handle(request),
    close: once(async () => {
      // The feed's sockets first: a server does not finish stopping while WebSockets stay open.
      feed.close();
      await app.stop();
      await ops.stop();
    }),
  };
}
