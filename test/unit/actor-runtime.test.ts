/**
 * The generic actor runtime without I/O: the backoff schedule, the supervisor, and StreamActor driven
 * through an in-memory StreamPort (a consumer group reduced to what the runtime relies on).
 */
import { describe, expect, test } from "bun:test";
import {
  createIoredisStreamPort,
  type PendingEntry,
  type StreamEntry,
  type StreamPort,
} from "../../actors/runtime/redis-streams.ts";
import { type ActorBehaviour, StreamActor } from "../../actors/runtime/stream-actor.ts";
import { compareIds } from "../../actors/runtime/stream-upkeep.ts";
import { supervise } from "../../actors/runtime/supervisor.ts";
import { closeRedis, type RedisConnection } from "../../src/adapters/redis.ts";
import { backoffDelay } from "../../src/support/backoff.ts";
import { waitFor } from "../support/wait-for.ts";

describe("backoffDelay", () => {
  const policy = { baseMs: 100, maxMs: 1_000 };

  test("doubles per attempt up to the cap, with equal jitter (never below half the ceiling)", () => {
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, policy, () => 0))).toEqual([
      50, 100, 200, 400, 500, 500,
    ]);
    expect([1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, policy, () => 0.999999))).toEqual([
      100, 200, 400, 800, 1_000, 1_000,
    ]);
  });

  test("never zero (no busy loop) and never past the cap, for any attempt number", () => {
    for (const attempt of [0, 1, 2, 10, 31, 1_000, Number.MAX_SAFE_INTEGER]) {
      for (const r of [0, 0.5, 0.999999]) {
        const delay = backoffDelay(attempt, policy, () => r);
        expect(delay).toBeGreaterThanOrEqual(50);
        expect(delay).toBeLessThanOrEqual(1_000);
      }
    }
  });
});

describe("supervise", () => {
  test("restarts a crashing loop with growing delays and stops when asked", async () => {
    const delays: number[] = [];
    let runs = 0;
    let stopping = false;
    await supervise(
      async () => {
        runs += 1;
        if (runs === 4) stopping = true;
        throw new Error(`crash ${runs}`);
      },
      {
        name: "test",
        backoff: { baseMs: 100, maxMs: 10_000 },
        isStopping: () => stopping,
        sleep: async (ms) => void delays.push(ms),
      },
    );
    expect(runs).toBe(4);
    expect(delays).toHaveLength(3);
    expect(delays[0]!).toBeLessThanOrEqual(100);
    expect(delays[2]!).toBeGreaterThanOrEqual(200);
  });

  test("a loop that returns while running counts as a crash", async () => {
    const errors: string[] = [];
    let runs = 0;
    await supervise(
      async () => {
        runs += 1;
      },
      {
        name: "quiet",
        backoff: { baseMs: 1, maxMs: 1 },
        isStopping: () => runs >= 2,
        onCrash: (error) => errors.push((error as Error).message),
        sleep: async () => {},
      },
    );
    expect(errors).toEqual(["quiet loop returned while running"]);
  });
});

/** A single-stream consumer group in memory: delivery counts, idle times, acks. */
class MemoryStreamPort implements StreamPort {
  entries: StreamEntry[] = [];
  lastDelivered = -1;
  pending = new Map<string, { consumer: string; deliveries: number; deliveredAt: number }>();
  added: { stream: string; fields: Record<string, string> }[] = [];
  now = () => Date.now();

  async ensureGroup() {}
  async readGroup(
    _group: string,
    consumer: string,
    _streams: readonly string[],
    count: number,
    blockMs: number,
  ) {
    const fresh = this.entries.slice(this.lastDelivered + 1, this.lastDelivered + 1 + count);
    if (fresh.length === 0) {
      await Bun.sleep(Math.min(blockMs, 20));
      return [];
    }
    this.lastDelivered += fresh.length;
    for (const entry of fresh)
      this.pending.set(entry.id, { consumer, deliveries: 1, deliveredAt: this.now() });
    return fresh;
  }
  async ack(_stream: string, _group: string, ids: readonly string[]) {
    for (const id of ids) this.pending.delete(id);
  }
  /** Like Redis 7: scans at most count x 10 pending entries from `cursor`, and says where to go on. */
  async autoClaim(
    _stream: string,
    _group: string,
    consumer: string,
    minIdleMs: number,
    count: number,
    cursor = "0-0",
  ) {
    const claimed: StreamEntry[] = [];
    const ids = [...this.pending.keys()].filter((id) => compareIds(id, cursor) >= 0).sort(compareIds);
    let scanned = 0;
    for (const id of ids) {
      if (claimed.length >= count || scanned >= count * 10)
        return { entries: claimed, deletedIds: [], next: id };
      scanned += 1;
      const state = this.pending.get(id)!;
      if (this.now() - state.deliveredAt < minIdleMs) continue;
      Object.assign(state, { consumer, deliveries: state.deliveries + 1, deliveredAt: this.now() });
      claimed.push({ ...this.entries.find((entry) => entry.id === id)!, redelivered: true });
    }
    return { entries: claimed, deletedIds: [], next: "0-0" };
  }
  async pendingIdle(_stream: string, _group: string, minIdleMs: number): Promise<PendingEntry[]> {
    return [...this.pending]
      .filter(([, state]) => this.now() - state.deliveredAt >= minIdleMs)
      .map(([id, state]) => ({
        id,
        consumer: state.consumer,
        idleMs: this.now() - state.deliveredAt,
        deliveries: state.deliveries,
      }));
  }
  async add(stream: string, fields: Record<string, string>) {
    this.added.push({ stream, fields });
    return `${this.added.length}-0`;
  }
  /** Dead-letter moves, each one step (the XADD and the XACK of one MULTI/EXEC). */
  moves: { stream: string; id: string }[] = [];
  async deadLetterAtomically(
    stream: string,
    _group: string,
    id: string,
    deadLetterStream: string,
    fields: Record<string, string>,
  ) {
    this.moves.push({ stream, id });
    this.pending.delete(id);
    return this.add(deadLetterStream, fields);
  }
  async range(_stream: string, start: string) {
    return this.entries.filter((entry) => entry.id === start);
  }
  async remove() {
    return 0;
  }
  async trimBelow() {
    return 0;
  }
  async oldestPendingId() {
    return null;
  }
  async groupState() {
    return null;
  }
  async length() {
    return this.entries.length;
  }
  async consumers() {
    return [];
  }
  async deleteConsumer() {}
}

function actorOver(
  port: MemoryStreamPort,
  behaviour: ActorBehaviour,
  overrides: { concurrency?: number; gatePollMs?: number } = {},
) {
  return new StreamActor({
    name: "test",
    streams: ["s"],
    group: "g",
    consumer: "c1",
    deadLetterStream: "dlq",
    blockingPort: port,
    port,
    behaviour,
    concurrency: overrides.concurrency ?? 4,
    claimTimeoutMs: 50,
    reclaimIntervalMs: 20,
    maxDeliveries: 3,
    blockMs: 20,
    ...(overrides.gatePollMs === undefined ? {} : { gatePollMs: overrides.gatePollMs }),
  });
}

const entry = (n: number): StreamEntry => ({ stream: "s", id: `${n}-0`, fields: { n: String(n) } });

describe("StreamActor", () => {
  test("never runs more handlers than its concurrency, and acknowledges each after it resolved", async () => {
    const port = new MemoryStreamPort();
    port.entries = Array.from({ length: 20 }, (_, i) => entry(i));
    let running = 0;
    let peak = 0;
    const done: string[] = [];
    const actor = actorOver(
      port,
      {
        async handle(message) {
          running += 1;
          peak = Math.max(peak, running);
          await Bun.sleep(5);
          running -= 1;
          done.push(message.id);
        },
      },
      { concurrency: 3 },
    );
    await actor.start();
    await waitFor(() => done.length === 20 && port.pending.size === 0, { timeoutMs: 5_000 });
    await actor.close(1_000);
    expect(peak).toBe(3);
  });

  test("takes nothing while the gate says 0, and resumes when it opens", async () => {
    const port = new MemoryStreamPort();
    port.entries = [entry(1), entry(2)];
    let gate = 0;
    const handled: string[] = [];
    const actor = actorOver(port, { handle: async (m) => void handled.push(m.id), gate: () => gate });
    await actor.start();
    await Bun.sleep(150);
    expect(port.lastDelivered).toBe(-1);
    gate = Number.POSITIVE_INFINITY;
    await waitFor(() => handled.length === 2, { timeoutMs: 5_000 });
    await actor.close(1_000);
  });

  test("a gate that opens while handlers still run wakes the read loop (onGateOpens), not only their ends", async () => {
    // One slot of the behaviour's own: a handler holds it for its first step only. With the idle poll
    // out of the way (a minute), only the wake can let the second entry in while the first still runs.
    const port = new MemoryStreamPort();
    port.entries = [entry(1), entry(2)];
    let ownSlotsInUse = 0;
    let wake = () => {};
    const firstStepDone: (() => void)[] = [];
    let finishAll: () => void = () => {};
    const finished = new Promise<void>((resolve) => (finishAll = resolve));
    const started: string[] = [];
    const actor = actorOver(
      port,
      {
        async handle(message) {
          started.push(message.id);
          ownSlotsInUse += 1;
          await new Promise<void>((resolve) => firstStepDone.push(resolve));
          ownSlotsInUse -= 1;
          wake();
          await finished;
        },
        gate: () => 1 - ownSlotsInUse,
        onGateOpens: (w) => (wake = w),
      },
      { gatePollMs: 60_000 },
    );
    await actor.start();
    await waitFor(() => started.length === 1, { timeoutMs: 5_000 });
    await Bun.sleep(50);
    expect(started).toEqual(["1-0"]);
    firstStepDone.shift()!();
    await waitFor(() => started.length === 2, { timeoutMs: 5_000 });
    expect(port.pending.size).toBe(2);
    firstStepDone.shift()!();
    finishAll();
    await waitFor(() => port.pending.size === 0, { timeoutMs: 5_000 });
    await actor.close(1_000);
  });

  test("a handler that keeps failing is dead-lettered after maxDeliveries with its last error", async () => {
    const port = new MemoryStreamPort();
    port.entries = [entry(7)];
    const parked: string[] = [];
    const actor = actorOver(port, {
      handle: async () => {
        throw new TypeError("cannot read instrument");
      },
      onDeadLettered: async (dead, reason) => void parked.push(`${dead.id}: ${reason}`),
    });
    await actor.start();
    await waitFor(() => port.added.length === 1, { timeoutMs: 5_000 });
    await actor.close(1_000);
    const [dead] = port.added;
    expect(dead?.stream).toBe("dlq");
    expect(dead?.fields).toMatchObject({
      source_id: "7-0",
      deliveries: "3",
      reason: "delivered 3 times without being acknowledged",
      last_error: "TypeError: cannot read instrument",
      payload: JSON.stringify({ n: "7" }),
    });
    expect(port.pending.size).toBe(0);
    // Added and acknowledged in one step, not as two commands.
    expect(port.moves).toEqual([{ stream: "s", id: "7-0" }]);
    expect(parked).toEqual(["7-0: delivered 3 times without being acknowledged"]);
  });

  test("the reclaimer's cursor reaches a dead consumer's entries behind many live pending ones", async () => {
    const port = new MemoryStreamPort();
    // 3,000 entries pending at a live consumer (just delivered), then 5 of a dead one (long idle).
    port.entries = Array.from({ length: 3_005 }, (_, i) => entry(i));
    port.lastDelivered = port.entries.length - 1;
    const now = Date.now();
    for (const [i, e] of port.entries.entries())
      port.pending.set(e.id, {
        consumer: i < 3_000 ? "live" : "dead",
        deliveries: 1,
        deliveredAt: i < 3_000 ? now + 3_600_000 : 0,
      });
    const handled: string[] = [];
    const actor = actorOver(port, { handle: async (m) => void handled.push(m.id) }, { concurrency: 10 });
    // One pass scans at most 100 (10 x the free slots) pending entries: without a cursor carried across
    // passes, every pass (every 20 ms here) would stop among the live ones.
    await actor.start();
    await waitFor(() => handled.length === 5, { timeoutMs: 5_000 }).catch(() => {});
    await actor.close(1_000);
    expect(handled.sort()).toEqual(["3000-0", "3001-0", "3002-0", "3003-0", "3004-0"]);
  });

  test("close() waits for running handlers up to the deadline, then aborts them", async () => {
    const port = new MemoryStreamPort();
    port.entries = [entry(1)];
    let aborted = false;
    const actor = actorOver(port, {
      handle: (_message, signal) =>
        new Promise<void>((_, reject) => {
          signal.addEventListener("abort", () => {
            aborted = true;
            reject(signal.reason);
          });
        }),
    });
    await actor.start();
    await waitFor(() => actor.inFlightCount === 1, { timeoutMs: 5_000 });
    const started = performance.now();
    await actor.close(100);
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
    expect(aborted).toBe(true);
    // Left pending for another consumer's reclaimer, never acknowledged half-done.
    expect(port.pending.has("1-0")).toBe(true);
  });
});

/** The commands an ioredis client received, for the port's dead-letter move (no Redis needed). */
function recordingRedis(isCluster: boolean) {
  const sent: string[] = [];
  const redis = {
    isCluster,
    xadd: async (key: string, ...args: string[]) => {
      sent.push(`XADD ${key} ${args.join(" ")}`);
      return "9-0";
    },
    xack: async (key: string, group: string, id: string) => {
      sent.push(`XACK ${key} ${group} ${id}`);
      return 1;
    },
    multi() {
      const queued: string[] = [];
      const chain = {
        xadd: (key: string, ...args: string[]) => {
          queued.push(`XADD ${key} ${args.join(" ")}`);
          return chain;
        },
        xack: (key: string, group: string, id: string) => {
          queued.push(`XACK ${key} ${group} ${id}`);
          return chain;
        },
        exec: async () => {
          sent.push(`MULTI ${queued.join("; ")} EXEC`);
          return [
            [null, "9-0"],
            [null, 1],
          ];
        },
      };
      return chain;
    },
  };
  return { redis: redis as unknown as Parameters<typeof createIoredisStreamPort>[0], sent };
}

describe("dead-letter move through the ioredis port", () => {
  test("on one Redis: the XADD and the XACK in one MULTI/EXEC", async () => {
    const { redis, sent } = recordingRedis(false);
    const id = await createIoredisStreamPort(redis).deadLetterAtomically("s", "g", "7-0", "dlq", {
      reason: "r",
    });
    expect(id).toBe("9-0");
    expect(sent).toEqual(["MULTI XADD dlq * reason r; XACK s g 7-0 EXEC"]);
  });

  test("in a Redis Cluster (another slot): XADD, then XACK", async () => {
    const { redis, sent } = recordingRedis(true);
    await createIoredisStreamPort(redis).deadLetterAtomically("s", "g", "7-0", "dlq", { reason: "r" });
    expect(sent).toEqual(["XADD dlq * reason r", "XACK s g 7-0"]);
  });
});

describe("closeRedis", () => {
  function connection(quit: () => Promise<unknown>, status = "ready") {
    const calls: string[] = [];
    const redis = {
      status,
      quit: () => {
        calls.push("quit");
        return quit();
      },
      disconnect: () => {
        calls.push("disconnect");
        throw new Error("already closed");
      },
    };
    return { redis: redis as unknown as RedisConnection, calls };
  }

  test("a QUIT that never answers is cut short by the timeout, then the connection is dropped", async () => {
    const { redis, calls } = connection(() => new Promise(() => {}));
    const started = performance.now();
    await closeRedis(redis, 50);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(calls).toEqual(["quit", "disconnect"]);
  }, 2_000);

  test("never throws: a failing QUIT, a failing disconnect, a connection not ready", async () => {
    const failing = connection(async () => {
      throw new Error("Connection is closed.");
    });
    await closeRedis(failing.redis, 50);
    expect(failing.calls).toEqual(["quit", "disconnect"]);
    const down = connection(async () => "OK", "reconnecting");
    await closeRedis(down.redis, 50);
    expect(down.calls).toEqual(["disconnect"]);
  });
});
