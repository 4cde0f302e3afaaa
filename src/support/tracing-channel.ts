/**
 * Bun 1.4's `diagnostics_channel.TracingChannel` lacks Node's `hasSubscribers` getter. ioredis (6.x)
 * traces a command unless `hasSubscribers === false`, so under Bun it traced every command for nobody:
 * it sanitized the arguments (a dozen regular expressions), built a context object and wrapped the
 * command's promise: a tenth of the client's CPU per command (median 19.3 against 17.4 µs, `bun run
 * bench:redis-client`) and 1.4-2% of a placement actor's CPU in Bun's profiler.
 *
 * This adds Node's definition (any of the five sub-channels has a subscriber) where the runtime has none,
 * so tracing still works for whoever subscribes (an APM agent), and costs nothing otherwise. It is a
 * no-op on Node and on a Bun that implements the getter.
 */
import diagnostics from "node:diagnostics_channel";

type TracingChannelLike = Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", diagnostics.Channel>;

export function ensureTracingChannelHasSubscribers(): void {
  if (typeof diagnostics.tracingChannel !== "function") return;
  const prototype = Object.getPrototypeOf(diagnostics.tracingChannel("orders:probe")) as object;
  if ("hasSubscribers" in prototype) return;
  Object.defineProperty(prototype, "hasSubscribers", {
    configurable: true,
    get(this: TracingChannelLike): boolean {
      return (
        this.start.hasSubscribers ||
        this.end.hasSubscribers ||
        this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers ||
        this.error.hasSubscribers
      );
    },
  });
}
