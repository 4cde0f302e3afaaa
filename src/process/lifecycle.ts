/**
 * What every process kind shares in its life: components that start in order and close in reverse,
 * start-up steps retried while MongoDB or Redis are not there yet, and the HTTP listener.
 */
import type { AnyElysia } from "elysia";
import type { ProcessKind } from "../adapters/metrics.ts";
import type { Logger } from "../logger.ts";
import { backoffDelay } from "../support/backoff.ts";

export interface RunningProcess {
  /** The public port (the API, the venue); null for actors, which serve only the operations routes. */
  port: number | null;
  /** The operations port: /health/live, /health/ready, /metrics. */
  opsPort: number;
  /** Answers a public request in process, without the network (tests use it as `app.handle`). */
  handle(request: Request): Promise<Response>;
  /** The same for the operations routes. */
  handleOps(request: Request): Promise<Response>;
  close(): Promise<void>;
}

export type Closer = { name: string; close: () => Promise<unknown> | unknown };

/**
 * Start-up steps that need MongoDB or Redis are retried with backoff for a while: a process that starts
 * before its dependencies (or during a blip) should wait for them, not crash-loop. The Kubernetes
 * startup probes allow at least this budget (test/ops/k8s-manifests.test.ts derives it from here).
 */
export const STARTUP_RETRY = { attempts: 20, backoff: { baseMs: 200, maxMs: 5_000 } } as const;

export async function withStartupRetry<T>(name: string, logger: Logger, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= STARTUP_RETRY.attempts) throw error;
      const delay = backoffDelay(attempt, STARTUP_RETRY.backoff);
      logger.warn("start-up step failed; retrying", { step: name, attempt, retry_in_ms: delay, error });
      await Bun.sleep(delay);
    }
  }
}

/** Closes in reverse start order; every closer runs even when one fails. */
export async function closeAll(closers: Closer[], logger: Logger): Promise<void> {
  for (const closer of [...closers].reverse()) {
    try {
      await closer.close();
    } catch (error) {
      logger.warn("close failed", { component: closer.name, error });
    }
  }
}

export function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= close();
    return closing;
  };
}

/** Listens on `port` (0: a free one) and returns the port it got. */
export function listen(
  app: AnyElysia,
  port: number,
  logger: Logger,
  what: { kind: ProcessKind; surface: "public" | "operations"; swagger?: boolean },
): number {
  app.listen({ port, hostname: "0.0.0.0", maxRequestBodySize: 1024 * 1024 });
  const bound = app.server?.port ?? port;
  logger.info("listening", {
    kind: what.kind,
    surface: what.surface,
    port: bound,
    swagger: what.swagger ? `http://127.0.0.1:${bound}/swagger` : undefined,
  });
  return bound;
}
