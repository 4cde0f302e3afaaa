/**
 * A service process (`api`, `actors`, `executions` or `all`): shared connections, the ops routes, the
 * API when the kind serves it, and the actors when it runs them (placement actors, execution actors). The actors are handed in (`startActors`) by the
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
    const ops = new Elysia().use(opsRoutes(shared.metrics, readinessChecks(shared, kind), shared.liveness));
    const serves = kind === "api" || kind === "all";
    // normalize: false: a body with an unknown field is refused (422 naming it), not silently trimmed.
    const app = serves ? new Elysia({ normalize: false }).use(httpMetrics(shared.metrics)) : null;
    if (app) await mountApi(app, config, logger, shared, closers);
    if (kind !== "api") {
      if (!startActors) throw new Error(`a process of kind ${kind} needs its actors`);
      await startActors(config, logger, shared, closers);
    }
    // Listening last: a process answers its probes once it can work. On shutdown the public port stops
    // first, then the operations port (both were started last).
    const opsPort = listen(ops, config.OPS_PORT, logger, { kind, surface: "operations" });
    closers.push({ name: "operations http", close: () => ops.stop() });
    const port = app ? listen(app, config.PORT, logger, { kind, surface: "public", swagger: true }) : null;
    if (app) closers.push({ name: "http", close: () => app.stop() });
    return {
      port,
      opsPort,
      handle: (request) =>
        app ? app.handle(request) : Promise.resolve(new Response("Not found", { status: 404 })),
      handleOps: (request) => ops.handle(request),
      close: once(() => closeAll(closers, logger)),
    };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}
