/** /health/live, /health/ready and /metrics: served by every process kind on PORT. */
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";

/**
 * A dependency the process needs to do its work; `ping` rejects or returns false when it is down, and
 * gives up its work when `signal` aborts (an unanswered ping must not hold a connection for good).
 */
export interface ReadinessCheck {
  name: string;
  ping(signal: AbortSignal): Promise<boolean>;
}

/**
 * Something that must make progress while the process lives (a read loop with entries waiting): false
 * means the process is stuck and restarting it is the cure. Read at each request, so checks may be
 * added after the routes are built.
 */
export interface LivenessCheck {
  name: string;
  alive(): boolean;
}

const READINESS_TIMEOUT_MS = 1_000;

export function opsRoutes(
  metrics: Metrics,
  checks: ReadinessCheck[],
  liveness: readonly LivenessCheck[] = [],
) {
  return new Elysia({ name: "ops-routes" })
    .get(
      "/health/live",
      ({ set }) => {
        const stuck = liveness.filter((check) => !check.alive()).map((check) => check.name);
        if (stuck.length === 0) return { status: "ok" };
        set.status = 503;
        return { status: "stuck", stuck };
      },
      { detail: { tags: ["operations"], summary: "Liveness: 503 when a loop that must progress is stuck" } },
    )
    .get(
      "/health/ready",
      async ({ set }) => {
        const results = await Promise.all(
          checks.map(async (check) => [check.name, await pingWithTimeout(check)] as const),
        );
        const ready = results.every(([, ok]) => ok);
        set.status = ready ? 200 : 503;
        return {
          status: ready ? "ready" : "not ready",
          checks: Object.fromEntries(results.map(([n, ok]) => [n, ok ? "up" : "down"])),
        };
      },
      {
        detail: {
          tags: ["operations"],
          summary: "Readiness: 200 only when the dependencies this process kind needs answer",
        },
      },
    )
    .get(
      "/metrics",
      async ({ set }) => {
        set.headers["content-type"] = metrics.registry.contentType;
        return metrics.registry.metrics();
      },
      { detail: { tags: ["operations"], summary: "Prometheus metrics" } },
    );
}

async function pingWithTimeout(check: ReadinessCheck): Promise<boolean> {
  const signal = AbortSignal.timeout(READINESS_TIMEOUT_MS);
  const timedOut = new Promise<boolean>((resolve) => signal.addEventListener("abort", () => resolve(false)));
  try {
    return await Promise.race([check.ping(signal), timedOut]);
  } catch {
    return false;
  }
}
