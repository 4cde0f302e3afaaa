/** /health/live, /health/ready and /metrics: served by every process kind on PORT. */
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";

/** A dependency the process needs to do its work; `ping` rejects or returns false when it is down. */
export interface ReadinessCheck {
  name: string;
  ping(): Promise<boolean>;
}

const READINESS_TIMEOUT_MS = 1_000;

export function opsRoutes(metrics: Metrics, checks: ReadinessCheck[]) {
  return new Elysia({ name: "ops-routes" })
    .get("/health/live", () => ({ status: "ok" }), { detail: { tags: ["operations"], summary: "Liveness" } })
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
      { detail: { tags: ["operations"], summary: "Readiness: 200 only when MongoDB and Redis answer" } },
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
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      check.ping(),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), READINESS_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
