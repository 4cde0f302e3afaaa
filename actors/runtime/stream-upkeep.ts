/**
 * Upkeep of an actor group's streams (placement, executions): trimming and the gauges the autoscaler
 * reads.
 * Trimming invariant: an entry is removed only when it is below both the oldest pending entry and the
 * group's last-delivered id, i.e. it was delivered and acknowledged. Nothing unacknowledged is ever cut.
 */
import { every } from "../../src/support/periodic.ts";
import type { StreamPort } from "./redis-streams.ts";

/** Consumer names idle this long with nothing pending belong to processes that are gone. */
const CONSUMER_MAX_IDLE_MS = 24 * 3_600_000;

export type StreamUpkeep = ReturnType<typeof createStreamUpkeep>;
export type StreamMeasure = Awaited<ReturnType<StreamUpkeep["measure"]>>;

/**
 * What every actor process runs on its group's streams: trimming and pruning of idle consumers every
 * `trimIntervalMs`, the gauges every `metricsIntervalMs` (handed to `onMeasure`). Returns the timers.
 */
export function runStreamUpkeep(
  upkeep: StreamUpkeep,
  options: {
    trimIntervalMs: number;
    metricsIntervalMs: number;
    onMeasure(measure: StreamMeasure): void;
    onError(task: string, error: unknown): void;
  },
): { stop(): Promise<void> }[] {
  return [
    every(
      options.trimIntervalMs,
      async () => {
        await upkeep.trimOnce();
        await upkeep.pruneConsumers(CONSUMER_MAX_IDLE_MS);
      },
      (error) => options.onError("trim", error),
    ),
    every(
      options.metricsIntervalMs,
      async () => options.onMeasure(await upkeep.measure()),
      (error) => options.onError("stream metrics", error),
    ),
  ];
}

export function createStreamUpkeep(deps: {
  port: StreamPort;
  streams: readonly string[];
  group: string;
  deadLetterStream: string;
}) {
  const { port, streams, group } = deps;

  async function trimOnce(): Promise<number> {
    let trimmed = 0;
    for (const stream of streams) {
      const state = await port.groupState(stream, group);
      if (!state || state.lastDeliveredId === "0-0") continue;
      const oldestPending = await port.oldestPendingId(stream, group);
      const firstUndelivered = nextId(state.lastDeliveredId);
      const minId =
        oldestPending && compareIds(oldestPending, firstUndelivered) < 0 ? oldestPending : firstUndelivered;
      trimmed += await port.trimBelow(stream, minId);
    }
    return trimmed;
  }

  async function measure(): Promise<{ length: number; lag: number; pending: number; deadLetters: number }> {
    let length = 0;
    let lag = 0;
    let pending = 0;
    for (const stream of streams) {
      const state = await port.groupState(stream, group);
      if (!state) continue;
      length += state.length;
      lag += state.lag;
      pending += state.pending;
    }
    return { length, lag, pending, deadLetters: await port.length(deps.deadLetterStream) };
  }

  /**
   * Every process start adds a consumer name to the group. Names with nothing pending that have been
   * idle for `maxIdleMs` belong to processes that are gone; deleting them loses nothing (a live one
   * that was merely idle is recreated by its next XREADGROUP).
   */
  async function pruneConsumers(maxIdleMs: number): Promise<number> {
    let pruned = 0;
    for (const stream of streams) {
      for (const consumer of await port.consumers(stream, group).catch(() => [])) {
        if (consumer.pending > 0 || consumer.idleMs < maxIdleMs) continue;
        await port.deleteConsumer(stream, group, consumer.name);
        pruned += 1;
      }
    }
    return pruned;
  }

  return { trimOnce, measure, pruneConsumers };
}

export function compareIds(a: string, b: string): number {
  const [aMs = 0n, aSeq = 0n] = a.split("-").map(BigInt);
  const [bMs = 0n, bSeq = 0n] = b.split("-").map(BigInt);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

function nextId(id: string): string {
  const [ms = "0", seq = "0"] = id.split("-");
  return `${ms}-${BigInt(seq) + 1n}`;
}
