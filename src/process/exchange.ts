import { Elysia } from "elysia";
import { createMetrics } from "../adapters/metrics.ts";
import type { Config } from "../config.ts";
import { createVenue } from "../exchange/venue.ts";
import { venueRoutes } from "../exchange/venue-routes.ts";
import { httpMetrics } from "../http/http-metrics.ts";
import { opsRoutes } from "../http/ops-routes.ts";
import type { Logger } from "../logger.ts";
import { listen, once, type RunningProcess } from "./lifecycle.ts";

/** The simulated venue: no MongoDB or Redis, always ready. */
export async function startExchange(config: Config, logger: Logger): Promise<RunningProcess> {
  const metrics = createMetrics("exchange");
  const venue = createVenue({
    failureRate: config.EXCHANGE_FAILURE_RATE,
    latencyMs: config.EXCHANGE_LATENCY_MS,
  });
  const app = new Elysia()
    .use(httpMetrics(metrics))
    .use(opsRoutes(metrics, []))
    .use(venueRoutes(venue, metrics, { adminToken: config.EXCHANGE_ADMIN_TOKEN }));
  const port = listen(app, config, logger, "exchange");
  return { port, handle: (request) => app.handle(request), close: once(async () => void (await app.stop())) };
}
