/**
 * /health/live answers 503 naming the stuck loops, read at each request (checks added after start count);
 * /metrics reads the placement actor's venue slots at each scrape.
 */
import { expect, test } from "bun:test";
import { createMetrics } from "../../src/adapters/metrics.ts";
import { type LivenessCheck, opsRoutes } from "../../src/http/ops-routes.ts";

test("liveness: 200 while every check is alive, 503 with the stuck names otherwise", async () => {
  const liveness: LivenessCheck[] = [];
  const app = opsRoutes(createMetrics("actors"), [], liveness);
  const live = async () => {
    const response = await app.handle(new Request("http://local/health/live"));
    return { status: response.status, body: await response.json() };
  };
  expect(await live()).toEqual({ status: 200, body: { status: "ok" } });
  let stuck = false;
  liveness.push({ name: "placement-read-loop", alive: () => !stuck });
  expect((await live()).status).toBe(200);
  stuck = true;
  expect(await live()).toEqual({ status: 503, body: { status: "stuck", stuck: ["placement-read-loop"] } });
});

test("/metrics reads placement_venue_in_flight from the actor at each scrape, not from the last handler event", async () => {
  const metrics = createMetrics("actors");
  const app = opsRoutes(metrics, [], []);
  const venueInFlight = async () => {
    const text = await (await app.handle(new Request("http://local/metrics"))).text();
    return text.match(/^placement_venue_in_flight(?:\{[^}]*\})? (\S+)$/m)?.[1];
  };
  expect(await venueInFlight()).toBe("0");
  let atVenue = 3;
  metrics.measureVenueInFlight(() => atVenue);
  expect(await venueInFlight()).toBe("3");
  atVenue = 0;
  expect(await venueInFlight()).toBe("0");
});
