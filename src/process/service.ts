/**
 * A service process (`api`, `actors` or `all`): shared connections, the ops routes, the API when the
 * kind serves it, and the actors when it runs them. The actors are handed in (`startActors`) by the
 * entry point: src/ never imports actors/ (one direction for the arrows).
 */
import { Elysia } from "elysia";
import type { Config } from "../config.ts";
import { httpMetrics } from "../http/http-metrics.ts";
import { opsRoutes } from "../http/ops-routes.ts";
import type { Logger } from "../logger.ts";
import { mountApi } from "./api.ts";
import { type Closer, closeAll, listen, once, type RunningProcess, withStartupRetry } from "./lifecycle.ts";
import { connectShared, readinessChecks, type ServiceKind, type Shared } from "./shared.ts";

/** Starts the actors of a process on its shared connections; pushes what must close onto `closers`. */
export type ActorsStarter = (
  config: Config,
  logger: Logger,
  shared: Shared,
  closers: Closer[],
) => Promise<void>;

export async function startService(
  config: Config,
  logger: Logger,
  kind: ServiceKind,
  startActors?: ActorsStarter,
): Promise<RunningProcess> {
  const closers: Closer[] = [];
  try {
    const shared = await connectShared(config, kind, closers);
    await withStartupRetry("order indexes", logger, () => shared.orders.ensureIndexes());
    // normalize: false: a body with an unknown field is refused (422 naming it), not silently trimmed.
    const app = new Elysia({ normalize: false })
      .use(httpMetrics(shared.metrics))
      .use(opsRoutes(shared.metrics, readinessChecks(shared, kind), shared.liveness));
    if (kind === "api" || kind === "all") await mountApi(app, config, logger, shared, closers);
    if (kind === "actors" || kind === "all") {
      if (!startActors) throw new Error(`a process of kind ${kind} needs its actors`);
      await startActors(config, logger, shared, closers);
    }
    const port = listen(app, config, logger, kind);
    // Stop accepting requests first on shutdown (it was started last).
    closers.push({ name: "http", close: () => app.stop() });
    return { port, handle: (request) => app.handle(request), close: once(() => closeAll(closers, logger)) };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}
