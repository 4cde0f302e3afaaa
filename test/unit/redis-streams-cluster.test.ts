/**
 * Reading several streams (partitions) without I/O: the entries taken never exceed the free slots
 * (XREADGROUP's COUNT is per stream), per-stream reads for Redis Cluster (one stream per call, one
 * failing stream does not stop the others), entries known by stream and id, the read loop's progress
 * for the liveness check; and REDIS_CLUSTER_NODES' validation.
 */
import { describe, expect, test } from "bun:test";
import type { StreamEntry, StreamPort } from "../../actors/runtime/redis-streams.ts";
import { type ActorBehaviour, type ActorObserver, StreamActor } from "../../actors/runtime/stream-actor.ts";
import { parseClusterNodes } from "../../src/adapters/redis.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { waitFor } from "../support/wait-for.ts";

interface ReadCall {
  streams: string[];
  count: number;
  blockMs: number | null;
  returned: number;
}

/** Consumer groups over several streams in memory: COUNT per stream, as Redis counts it. */
class MultiStreamPort implements StreamPort {
  readonly entries = new Map<string, StreamEntry[]>();
  readonly next = new Map<string, number>();
  readonly pending = new Set<string>();
  readonly reads: ReadCall[] = [];
  maxPending = 0;
  /** Streams whose reads fail (a node down). */
  readonly failing = new Set<string>();
  /** Reads hang while set (a stopped Redis without timeouts). */
  hang = false;

  constructor(readonly oneStreamPerRead = false) {}

  fill(stream: string, count: number, ids?: (i: number) => string) {
    const list = this.entries.get(stream) ?? [];
    for (let i = 0; i < count; i++)
      list.push({ stream, id: ids ? ids(i) : `${list.length + 1}-0`, fields: { stream, n: String(i) } });
    this.entries.set(stream, list);
  }

  async ensureGroup() {}
  async readGroup(
    _group: string,
    _consumer: string,
    streams: readonly string[],
    count: number,
    blockMs: number | null,
  ) {
    if (this.oneStreamPerRead && streams.length > 1)
      throw new Error("CROSSSLOT Keys in request don't hash to the same slot");
    if (this.hang) await new Promise(() => {});
    if (streams.some((stream) => this.failing.has(stream))) throw new Error("Command timed out");
    const found: StreamEntry[] = [];
    for (const stream of streams) {
      const from = this.next.get(stream) ?? 0;
      const fresh = (this.entries.get(stream) ?? []).slice(from, from + count);
      this.next.set(stream, from + fresh.length);
      for (const entry of fresh) this.pending.add(`${stream} ${entry.id}`);
      found.push(...fresh);
    }
    this.maxPending = Math.max(this.maxPending, this.pending.size);
    this.reads.push({ streams: [...streams], count, blockMs, returned: found.length });
    if (found.length === 0 && blockMs !== null) await Bun.sleep(Math.min(blockMs, 5));
    return found;
  }
  async ack(stream: string, _group: string, ids: readonly string[]) {
    for (const id of ids) this.pending.delete(`${stream} ${id}`);
  }
  async autoClaim() {
    return { entries: [], deletedIds: [], next: "0-0" };
  }
  async pendingIdle() {
    return [];
  }
  async add() {
    return "1-0";
  }
  async deadLetterAtomically(stream: string, group: string, id: string) {
    await this.ack(stream, group, [id]);
    return "1-0";
  }
  async range() {
    return [];
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
    return 0;
  }
  async consumers() {
    return [];
  }
  async deleteConsumer() {}
}

const STREAMS = ["{t:placement-0}:stream", "{t:placement-1}:stream", "{t:placement-2}:stream"];

function actorOver(
  port: MultiStreamPort,
  behaviour: ActorBehaviour,
  options: { concurrency: number; streams?: string[]; observer?: ActorObserver },
) {
  return new StreamActor({
    name: "test",
    streams: options.streams ?? STREAMS,
    group: "g",
    consumer: "c1",
    deadLetterStream: "dlq",
    blockingPort: port,
    port,
    behaviour,
    concurrency: options.concurrency,
    claimTimeoutMs: 60_000,
    reclaimIntervalMs: 60_000,
    maxDeliveries: 3,
    blockMs: 20,
    restartBackoff: { baseMs: 20, maxMs: 40 },
    observer: options.observer,
  });
}

/** A behaviour whose handlers wait until released; records the peak number running at once. */
function heldBehaviour() {
  const held: (() => void)[] = [];
  const handled: string[] = [];
  let running = 0;
  let peak = 0;
  const behaviour: ActorBehaviour = {
    handle: (message) =>
      new Promise<void>((resolve) => {
        running += 1;
        peak = Math.max(peak, running);
        held.push(() => {
          running -= 1;
          handled.push(`${message.stream} ${message.id}`);
          resolve();
        });
      }),
  };
  return {
    behaviour,
    handled,
    get peak() {
      return peak;
    },
    get running() {
      return running;
    },
    releaseAll() {
      for (const release of held.splice(0)) release();
    },
  };
}

describe.each([
  ["one XREADGROUP over all streams", false],
  ["one XREADGROUP per stream (Redis Cluster)", true],
])("reading 3 streams: %s", (_name, perStream) => {
  test("never takes more entries than free slots, whatever the COUNT per stream", async () => {
    const port = new MultiStreamPort(perStream);
    for (const stream of STREAMS) port.fill(stream, 20);
    const held = heldBehaviour();
    const actor = actorOver(port, held.behaviour, { concurrency: 4 });
    await actor.start();
    try {
      await waitFor(() => held.running === 4, { timeoutMs: 5_000, message: "4 handlers running" });
      await Bun.sleep(50);
      // Full: nothing more was read.
      expect(port.pending.size).toBe(4);
      await waitFor(
        () => {
          held.releaseAll();
          return held.handled.length === 60;
        },
        { timeoutMs: 10_000, intervalMs: 5, message: "all 60 entries handled" },
      );
      expect(held.peak).toBe(4);
      // Delivered and not yet acknowledged never exceeded the concurrency, and no read asked for more.
      expect(port.maxPending).toBeLessThanOrEqual(4);
      for (const read of port.reads) {
        expect(read.count * read.streams.length).toBeLessThanOrEqual(4);
        if (perStream) expect(read.streams).toHaveLength(1);
      }
      // Every stream was read from (not one drained before the others were looked at).
      expect(new Set(held.handled.slice(0, 12).map((key) => key.split(" ")[0])).size).toBe(3);
    } finally {
      held.releaseAll();
      await actor.close(1_000);
    }
  });

  test("the same id on two streams is two entries: both handled, each acknowledged on its stream", async () => {
    const port = new MultiStreamPort(perStream);
    for (const stream of STREAMS) port.fill(stream, 5, (i) => `${1_000 + i}-0`);
    const handled: string[] = [];
    const actor = actorOver(
      port,
      {
        async handle(message) {
          await Bun.sleep(2);
          handled.push(`${message.stream} ${message.id}`);
        },
      },
      { concurrency: 8 },
    );
    await actor.start();
    try {
      await waitFor(() => handled.length === 15 && port.pending.size === 0, {
        timeoutMs: 5_000,
        message: "15 entries handled and acknowledged",
      });
      expect(new Set(handled).size).toBe(15);
    } finally {
      await actor.close(1_000);
    }
  });
});

describe("per-stream reads", () => {
  test("with nothing waiting, block on one stream at a time, briefly, a different one each pass", async () => {
    const port = new MultiStreamPort(true);
    const actor = actorOver(port, { handle: async () => {} }, { concurrency: 4 });
    await actor.start();
    await waitFor(() => port.reads.filter((r) => r.blockMs !== null).length >= 6, { timeoutMs: 5_000 });
    await actor.close(1_000);
    const blocking = port.reads.filter((read) => read.blockMs !== null);
    expect(new Set(blocking.map((read) => read.streams[0])).size).toBe(3);
    // Every blocking read came after a non-blocking look at the other streams.
    expect(port.reads.filter((read) => read.blockMs === null).length).toBeGreaterThanOrEqual(
      blocking.length * 2,
    );
  });

  test("a stream whose reads fail is skipped with backoff; the others are read on", async () => {
    const port = new MultiStreamPort(true);
    for (const stream of STREAMS) port.fill(stream, 10);
    port.failing.add(STREAMS[1]!);
    const failures: string[] = [];
    const crashes: string[] = [];
    const handled: string[] = [];
    const actor = actorOver(
      port,
      { handle: async (message) => void handled.push(message.stream) },
      {
        concurrency: 4,
        observer: {
          readFailed: (stream, error) => failures.push(`${stream}: ${(error as Error).message}`),
          crashed: (loop) => crashes.push(loop),
        },
      },
    );
    await actor.start();
    try {
      await waitFor(() => handled.length === 20, { timeoutMs: 5_000, message: "the healthy streams read" });
      expect(handled.filter((stream) => stream === STREAMS[1])).toEqual([]);
      expect(failures.length).toBeGreaterThan(0);
      expect(failures[0]).toBe(`${STREAMS[1]}: Command timed out`);
      expect(crashes).toEqual([]);
      port.failing.clear();
      await waitFor(() => handled.length === 30, { timeoutMs: 5_000, message: "the stream read again" });
    } finally {
      await actor.close(1_000);
    }
  });

  test("without a readFailed observer a failed read is reported as a crash of the read loop", async () => {
    const port = new MultiStreamPort(true);
    port.failing.add(STREAMS[0]!);
    const crashes: string[] = [];
    const actor = actorOver(
      port,
      { handle: async () => {} },
      {
        concurrency: 2,
        observer: { crashed: (loop, error) => crashes.push(`${loop}: ${(error as Error).message}`) },
      },
    );
    await actor.start();
    await waitFor(() => crashes.length > 0, { timeoutMs: 5_000 });
    await actor.close(1_000);
    expect(crashes[0]).toBe("read: Command timed out");
  });
});

describe("one XREADGROUP over all streams", () => {
  test("a failed read is reported and tried again soon, and reading resumes", async () => {
    const port = new MultiStreamPort();
    for (const stream of STREAMS) port.fill(stream, 4);
    port.failing.add(STREAMS[2]!);
    const failures: { streams: string; retryInMs: number }[] = [];
    const handled: string[] = [];
    const actor = actorOver(
      port,
      { handle: async (message) => void handled.push(message.id) },
      {
        concurrency: 6,
        observer: { readFailed: (streams, _error, retryInMs) => failures.push({ streams, retryInMs }) },
      },
    );
    await actor.start();
    try {
      await waitFor(() => failures.length >= 3, { timeoutMs: 5_000, message: "failed reads reported" });
      expect(handled).toEqual([]);
      expect(failures[0]!.streams).toBe(STREAMS.join(","));
      for (const failure of failures) expect(failure.retryInMs).toBeLessThanOrEqual(40);
      port.failing.clear();
      await waitFor(() => handled.length === 12, { timeoutMs: 5_000, message: "all read after the failure" });
    } finally {
      await actor.close(1_000);
    }
  });
});

describe("read loop progress (liveness)", () => {
  test("a read that never returns shows as a growing stall; reads and a full actor do not", async () => {
    const port = new MultiStreamPort();
    const held = heldBehaviour();
    const actor = actorOver(port, held.behaviour, { concurrency: 2, streams: [STREAMS[0]!] });
    expect(actor.stalledForMs()).toBe(0);
    await actor.start();
    try {
      await waitFor(() => actor.lastReadAt > 0, { timeoutMs: 5_000 });
      expect(actor.stalledForMs()).toBeLessThan(500);
      // All slots busy: the loop does not read, and that is not a stall.
      port.fill(STREAMS[0]!, 2);
      await waitFor(() => held.running === 2, { timeoutMs: 5_000 });
      const readAt = actor.lastReadAt;
      await Bun.sleep(300);
      expect(actor.lastReadAt).toBe(readAt);
      expect(actor.stalledForMs()).toBeLessThan(250);
      // Reads hang (no timeout would end them): the stall grows.
      port.hang = true;
      held.releaseAll();
      await Bun.sleep(400);
      expect(actor.stalledForMs()).toBeGreaterThanOrEqual(300);
      expect(Date.now() - actor.lastProgressAt).toBeGreaterThanOrEqual(300);
    } finally {
      held.releaseAll();
      await actor.close(100);
    }
    expect(actor.stalledForMs()).toBe(0);
  });
});

describe("REDIS_CLUSTER_NODES", () => {
  test("unset: no cluster (one Redis at REDIS_URL)", () => {
    expect(loadConfig({}).REDIS_CLUSTER_NODES).toBeUndefined();
    expect(loadConfig({ REDIS_CLUSTER_NODES: "" }).REDIS_CLUSTER_NODES).toBeUndefined();
  });

  test("host:port seed nodes are accepted and parsed", () => {
    const nodes = "127.0.0.1:7000,redis-1.redis.svc:7001,[::1]:7002";
    expect(loadConfig({ REDIS_CLUSTER_NODES: nodes }).REDIS_CLUSTER_NODES).toBe(nodes);
    expect(parseClusterNodes(nodes)).toEqual([
      { host: "127.0.0.1", port: 7000 },
      { host: "redis-1.redis.svc", port: 7001 },
      { host: "::1", port: 7002 },
    ]);
  });

  test("anything else is refused with the variable named", () => {
    for (const bad of [
      "127.0.0.1",
      "redis://127.0.0.1:7000",
      "a:1,",
      "a:1,,b:2",
      "a:1 b:2",
      "a:0",
      "a:70000",
    ]) {
      let problems: string[] = [];
      try {
        loadConfig({ REDIS_CLUSTER_NODES: bad });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        problems = (error as ConfigError).problems;
      }
      expect(problems, bad).toHaveLength(1);
      expect(problems[0]).toStartWith("REDIS_CLUSTER_NODES must be host:port[,host:port...]");
    }
    expect(() => parseClusterNodes("nohost")).toThrow(/host:port/);
  });
});
