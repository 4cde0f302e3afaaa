/** Request duration by route pattern (never the raw path: ids would explode the label set). */
import { Elysia } from "elysia";
import type { Metrics } from "../adapters/metrics.ts";

export function httpMetrics(metrics: Metrics) {
  const started = new WeakMap<Request, number>();
  return new Elysia({ name: "http-metrics" })
    .onRequest(({ request }) => {
      started.set(request, performance.now());
    })
    .onAfterResponse({ as: "global" }, ({ request, route, set }) => {
      const start = started.get(request);
      if (start === undefined) return;
      const status = typeof set.status === "number" ? set.status : 200;
      metrics.httpRequestDuration.observe(
        { method: request.method, route: route || "unmatched", status: String(status) },
        (performance.now() - start) / 1000,
      );
    });
}
