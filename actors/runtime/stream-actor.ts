/**
 * The actor runtime: a mailbox (Redis Streams read through a consumer group), a behaviour that handles
 * one message, bounded concurrency, reclaiming of entries a dead or hung consumer left pending,
 * dead-lettering of poison entries, and a supervisor that restarts the loops when they crash.
 * It knows nothing about what the messages mean.
 *
 * Invariants of the consumer loop:
 * - An entry is acknowledged only after its handler resolved (the handler made its effect durable).
 *   A handler that throws leaves the entry pending; the reclaimer delivers it again after
 *   `claimTimeoutMs` idle, to this or another process.
 * - At most `concurrency` handlers run at once; `gate()` may lower that (a circuit breaker that is open
 *   says 0, half-open says 1), so that no entry is taken that cannot be worked on.
 * - An entry delivered `maxDeliveries` times without being acknowledged is a poison message: it goes to
 *   the dead-letter stream with its history and is acknowledged.
 * - A group lost with a Redis restart (NOGROUP) is recreated and reading goes on.
 */
import type { BackoffPolicy } from "../../src/support/backoff.ts";
import { isNoGroupError, type StreamEntry, type StreamPort } from "./redis-streams.ts";
import { supervise } from "./supervisor.ts";

export interface ActorMessage extends StreamEntry {
  fields: Record<string, string>;
}

export interface ActorBehaviour {
  /** Resolves when the message is done and may be acknowledged; rejects to leave it pending. */
  handle(message: ActorMessage, signal: AbortSignal): Promise<void>;
  /** How many new messages may be taken now beyond the concurrency bound (default: unlimited). */
  gate?(): number;
  /** Called after an entry was moved to the dead-letter stream, so the owner can park what it refers to. */
  onDeadLettered?(entry: StreamEntry, reason: string): Promise<void>;
}

export interface ActorObserver {
  inFlight?(count: number): void;
  handled?(result: "ack" | "error"): void;
  reclaimed?(count: number): void;
  missingPayload?(count: number): void;
  deadLettered?(reason: string): void;
  crashed?(loop: string, error: unknown, restartInMs: number): void;
  handlerFailed?(entry: StreamEntry, error: unknown): void;
}

export interface StreamActorOptions {
  name: string;
  streams: readonly string[];
  group: string;
  consumer: string;
  deadLetterStream: string;
  /** Connection used only for the blocking XREADGROUP. */
  blockingPort: StreamPort;
  /** Connection for everything else. */
  port: StreamPort;
  behaviour: ActorBehaviour;
  concurrency: number;
  claimTimeoutMs: number;
  reclaimIntervalMs: number;
  maxDeliveries: number;
  blockMs?: number;
  restartBackoff?: BackoffPolicy;
  observer?: ActorObserver;
}

type State = "not-started" | "running" | "stopping" | "stopped";

export class StreamActor {
  private state: State = "not-started";
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Why each entry's last handling here failed (bounded): the dead-letter entry carries it. */
  private readonly lastErrors = new Map<string, string>();
  private readonly shutdown = new AbortController();
  private wake: (() => void) | undefined;
  private loops: Promise<void>[] = [];
  private reclaimTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Where the next XAUTOCLAIM of each stream starts: carried across passes, so that a dead consumer's
   * entries behind more than one pass's worth of live ones are reached too.
   */
  private readonly reclaimCursors = new Map<string, string>();

  constructor(private readonly options: StreamActorOptions) {}

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  async start(): Promise<void> {
    if (this.state !== "not-started") return;
    for (const stream of this.options.streams)
      await this.options.port.ensureGroup(stream, this.options.group);
    this.state = "running";
    const restartBackoff = this.options.restartBackoff ?? { baseMs: 200, maxMs: 10_000 };
    const isStopping = () => this.state !== "running";
    this.loops.push(
      supervise(() => this.readLoop(), {
        name: `${this.options.name}-read`,
        backoff: restartBackoff,
        isStopping,
        onCrash: (error, delay) => this.options.observer?.crashed?.("read", error, delay),
      }),
    );
    this.scheduleReclaim();
  }

  /**
   * Stops taking work, waits for handlers to finish up to `deadlineMs`, then aborts the rest (their
   * entries stay pending and are reclaimed). Idempotent.
   */
  async close(deadlineMs: number): Promise<void> {
    if (this.state === "stopped" || this.state === "stopping") {
      await Promise.all(this.loops);
      return;
    }
    this.state = "stopping";
    clearTimeout(this.reclaimTimer);
    this.wake?.();
    const drained = Promise.allSettled([...this.inFlight.values()]);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([drained, expired]);
    clearTimeout(timer);
    this.shutdown.abort(new Error("shutting down"));
    await Promise.race([Promise.allSettled([...this.inFlight.values()]), Bun.sleep(1_000)]);
    await Promise.race([Promise.all(this.loops), Bun.sleep(this.options.blockMs ?? 1_000)]);
    this.state = "stopped";
  }

  private freeSlots(): number {
    const free = this.options.concurrency - this.inFlight.size;
    const gated = this.options.behaviour.gate?.() ?? Number.POSITIVE_INFINITY;
    return Math.max(0, Math.min(free, gated));
  }

  private async readLoop(): Promise<void> {
    const { blockingPort, port, group, consumer, streams } = this.options;
    const blockMs = this.options.blockMs ?? 1_000;
    while (this.state === "running") {
      const slots = this.freeSlots();
      if (slots === 0) {
        await this.waitForWake(100);
        continue;
      }
      let entries: StreamEntry[];
      try {
        entries = await blockingPort.readGroup(group, consumer, streams, slots, blockMs);
      } catch (error) {
        if (!isNoGroupError(error)) throw error;
        for (const stream of streams) await port.ensureGroup(stream, group);
        continue;
      }
      // Entries read while stopping stay pending for the reclaimer: no new work starts during the drain.
      if (this.state !== "running") return;
      for (const entry of entries) this.dispatch(entry);
    }
  }

  private dispatch(entry: StreamEntry): void {
    if (this.inFlight.has(entry.id)) return;
    if (entry.fields === null) {
      // The payload is gone: nothing to hand to the behaviour. The owner's own records re-drive the work.
      this.options.observer?.missingPayload?.(1);
      void this.options.port.ack(entry.stream, this.options.group, [entry.id]).catch(() => {});
      return;
    }
    const message = entry as ActorMessage;
    const work = this.options.behaviour
      .handle(message, this.shutdown.signal)
      .then(
        async () => {
          this.lastErrors.delete(entry.id);
          await this.options.port.ack(entry.stream, this.options.group, [entry.id]);
          this.options.observer?.handled?.("ack");
        },
        (error) => {
          this.rememberError(entry.id, error);
          this.options.observer?.handled?.("error");
          this.options.observer?.handlerFailed?.(entry, error);
        },
      )
      .catch((error) => this.options.observer?.handlerFailed?.(entry, error))
      .finally(() => {
        this.inFlight.delete(entry.id);
        this.options.observer?.inFlight?.(this.inFlight.size);
        this.wake?.();
      });
    this.inFlight.set(entry.id, work);
    this.options.observer?.inFlight?.(this.inFlight.size);
  }

  private rememberError(id: string, error: unknown): void {
    this.lastErrors.delete(id);
    this.lastErrors.set(id, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    if (this.lastErrors.size > 10_000) {
      const oldest = this.lastErrors.keys().next().value;
      if (oldest !== undefined) this.lastErrors.delete(oldest);
    }
  }

  private waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private scheduleReclaim(): void {
    if (this.state !== "running") return;
    this.reclaimTimer = setTimeout(() => {
      this.reclaimOnce()
        .catch((error) => this.options.observer?.crashed?.("reclaim", error, this.options.reclaimIntervalMs))
        .finally(() => this.scheduleReclaim());
    }, this.options.reclaimIntervalMs);
  }

  /** One pass of the reclaimer: dead-letter poison entries, then take over idle ones while slots are free. */
  async reclaimOnce(): Promise<void> {
    const { port, group, consumer, claimTimeoutMs, maxDeliveries } = this.options;
    for (const stream of this.options.streams) {
      if (this.state !== "running") return;
      const idle = await port.pendingIdle(stream, group, claimTimeoutMs, 100);
      for (const pending of idle) {
        if (pending.deliveries >= maxDeliveries && !this.inFlight.has(pending.id)) {
          await this.deadLetter(
            stream,
            pending.id,
            `delivered ${pending.deliveries} times without being acknowledged`,
            pending,
          );
        }
      }
      const slots = this.freeSlots();
      if (slots === 0) continue;
      const { entries, deletedIds, next } = await port.autoClaim(
        stream,
        group,
        consumer,
        claimTimeoutMs,
        Math.min(slots, 100),
        this.reclaimCursors.get(stream) ?? "0-0",
      );
      this.reclaimCursors.set(stream, next);
      if (deletedIds.length > 0) {
        this.options.observer?.missingPayload?.(deletedIds.length);
        await port.ack(stream, group, deletedIds);
      }
      // Claimed while stopping: they stay pending (idle again) for another consumer's reclaimer.
      if (this.state !== "running") return;
      const fresh = entries.filter((entry) => !this.inFlight.has(entry.id));
      if (fresh.length > 0) this.options.observer?.reclaimed?.(fresh.length);
      for (const entry of fresh) this.dispatch(entry);
    }
  }

  private async deadLetter(
    stream: string,
    id: string,
    reason: string,
    pending: { consumer: string; deliveries: number },
  ) {
    const { port, group, deadLetterStream } = this.options;
    const [entry] = await port.range(stream, id, id, 1);
    await port.add(deadLetterStream, {
      source_stream: stream,
      source_id: id,
      reason,
      deliveries: String(pending.deliveries),
      last_consumer: pending.consumer,
      payload: JSON.stringify(entry?.fields ?? null),
      // Known when this process handled it last; another consumer's error is in that consumer's log.
      last_error: this.lastErrors.get(id) ?? "unknown (handled by another consumer)",
      dead_lettered_at: new Date().toISOString(),
    });
    await port.ack(stream, group, [id]);
    this.lastErrors.delete(id);
    this.options.observer?.deadLettered?.("max_deliveries");
    await this.options.behaviour.onDeadLettered?.(entry ?? { stream, id, fields: null }, reason);
  }
}
