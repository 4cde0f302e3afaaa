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
 * - XREADGROUP's COUNT is per stream: one read over N streams asks each for a share of the free slots
 *   (or one entry each from as many streams as there are free slots), and per-stream reads ask for
 *   what is still free, so the entries taken never exceed the free slots.
 * - An entry is known by its stream and id (`${stream} ${id}`): ids repeat across streams.
 * - Every actor process reads every stream (partition): every partition is read while any process
 *   lives, and the consumer group spreads each partition's entries over the processes.
 */
import { type BackoffPolicy, backoffDelay } from "../../src/support/backoff.ts";
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
  /**
   * Given at start: call it when the gate opens while handlers still run (a slot of the behaviour's own
   * freed), so that the read loop takes work at once rather than at its next poll.
   */
  onGateOpens?(wake: () => void): void;
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
  /**
   * A read failed (a timeout, Redis or a node down) and is tried again after `retryInMs`; with
   * per-stream reads the other streams are read on meanwhile. `streams`: the stream, or the streams of
   * a read over several joined with ",". Default: reported as `crashed("read", error, retryInMs)`.
   */
  readFailed?(streams: string, error: unknown, retryInMs: number): void;
  handlerFailed?(entry: StreamEntry, error: unknown): void;
}

export interface StreamActorOptions {
  name: string;
  streams: readonly string[];
  group: string;
  consumer: string;
  deadLetterStream: string;
  /** Connection used only for the (blocking) XREADGROUP. */
  blockingPort: StreamPort;
  /**
   * Read each stream with its own XREADGROUP (default: `blockingPort.oneStreamPerRead`, else one call
   * over all streams). Redis Cluster needs it: streams on different slots cannot be read in one call.
   * Each pass reads every stream without blocking, taking at most what is still free; when none had
   * anything, it blocks on one stream (a different one each pass) for at most MULTI_STREAM_BLOCK_MS. A
   * stream whose read fails is skipped, with backoff, while the others are read on.
   */
  perStreamReads?: boolean;
  /** Connection for everything else. */
  port: StreamPort;
  behaviour: ActorBehaviour;
  concurrency: number;
  claimTimeoutMs: number;
  reclaimIntervalMs: number;
  maxDeliveries: number;
  /** Longest BLOCK of one XREADGROUP (default DEFAULT_READ_BLOCK_MS). */
  blockMs?: number;
  /**
   * With no slot free, how often the read loop looks again when nothing wakes it (a handler ending or
   * the behaviour's `onGateOpens` does). Default GATE_POLL_MS.
   */
  gatePollMs?: number;
  restartBackoff?: BackoffPolicy;
  observer?: ActorObserver;
}

type State = "not-started" | "running" | "stopping" | "stopped";

/** The BLOCK of the read loop's XREADGROUP unless `blockMs` says otherwise. */
export const DEFAULT_READ_BLOCK_MS = 1_000;
/**
 * The BLOCK of a read that waits on some of the streams only (per-stream reads, or fewer free slots than
 * streams): entries arriving on the others wait at most this long to be seen.
 */
export const MULTI_STREAM_BLOCK_MS = 200;
/**
 * A failed read (a timeout, Redis or a node down) is tried again within this long, however often it
 * failed: a Redis that comes back is read again soon (the supervisor's backoff would grow to its cap).
 */
export const READ_RETRY_MAX_MS = 2_000;
/** See `gatePollMs`: a gate that closes for reasons of its own (a breaker) reopens without a wake. */
export const GATE_POLL_MS = 100;
const DEFAULT_RESTART_BACKOFF: BackoffPolicy = { baseMs: 200, maxMs: 10_000 };

/** How an entry is known in this process: ids repeat across streams. */
const entryKey = (stream: string, id: string) => `${stream} ${id}`;

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
  /** Which stream a pass starts with (and blocks on): turns round so that every stream gets its turn. */
  private rotation = 0;
  /**
   * Reads that failed, by stream (per-stream reads) or by the streams joined with "," (one read over
   * all): not tried again before `retryAt`, backing off with consecutive `failures`.
   */
  private readonly failedReads = new Map<string, { failures: number; retryAt: number }>();
  private readAt = 0;
  private progressAt = 0;

  constructor(private readonly options: StreamActorOptions) {}

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** When (Date.now()) the last XREADGROUP of the read loop returned, with or without entries; 0 before. */
  get lastReadAt(): number {
    return this.readAt;
  }

  /**
   * When (Date.now()) the read loop last made progress: a read returned, or it chose not to read because
   * no slot was free (all busy, or the behaviour's gate closed). Set at start.
   */
  get lastProgressAt(): number {
    return this.progressAt;
  }

  /**
   * How long the read loop has made no progress; 0 unless running. A read loop that is healthy stays
   * under its BLOCK time plus one round trip; one stuck on a dead connection, or crashing on every read,
   * grows without bound (the liveness check compares it with a limit when entries are waiting).
   */
  stalledForMs(now = Date.now()): number {
    return this.state === "running" ? Math.max(0, now - this.progressAt) : 0;
  }

  async start(): Promise<void> {
    if (this.state !== "not-started") return;
    for (const stream of this.options.streams)
      await this.options.port.ensureGroup(stream, this.options.group);
    this.state = "running";
    this.progressAt = Date.now();
    this.options.behaviour.onGateOpens?.(() => this.wake?.());
    const restartBackoff = this.options.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
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
    await Promise.race([Promise.all(this.loops), Bun.sleep(this.options.blockMs ?? DEFAULT_READ_BLOCK_MS)]);
    this.state = "stopped";
  }

  private freeSlots(): number {
    const free = this.options.concurrency - this.inFlight.size;
    const gated = this.options.behaviour.gate?.() ?? Number.POSITIVE_INFINITY;
    return Math.max(0, Math.min(free, gated));
  }

  private async readLoop(): Promise<void> {
    const { port, group, streams } = this.options;
    const blockMs = this.options.blockMs ?? DEFAULT_READ_BLOCK_MS;
    const perStreamReads = this.options.perStreamReads ?? this.options.blockingPort.oneStreamPerRead ?? false;
    while (this.state === "running") {
      const slots = this.freeSlots();
      if (slots === 0) {
        // Waiting for a slot is not a stall: the work in flight is the progress.
        this.progressAt = Date.now();
        await this.waitForWake(this.options.gatePollMs ?? GATE_POLL_MS);
        continue;
      }
      try {
        if (perStreamReads) await this.readEachStream(slots, blockMs);
        else await this.readAllStreams(slots, blockMs);
      } catch (error) {
        if (!isNoGroupError(error)) throw error;
        for (const stream of streams) await port.ensureGroup(stream, group);
      }
    }
  }

  /** One XREADGROUP over the streams; the entries taken never exceed `slots`. */
  private async readAllStreams(slots: number, blockMs: number): Promise<void> {
    const { streams } = this.options;
    const all = streams.join(",");
    if (await this.backingOff([all], blockMs)) return;
    if (streams.length === 1 || slots >= streams.length) {
      // COUNT is per stream: each stream's share of the free slots (all of them with one stream).
      this.take(await this.readOrBackOff(all, streams, Math.floor(slots / streams.length), blockMs));
      return;
    }
    // Fewer free slots than streams: one entry from each of `slots` streams, other streams next time.
    const start = this.rotation++ % streams.length;
    const some = Array.from({ length: slots }, (_, i) => streams[(start + i) % streams.length]!);
    this.take(await this.readOrBackOff(all, some, 1, Math.min(blockMs, MULTI_STREAM_BLOCK_MS)));
  }

  /** Per-stream reads (perStreamReads): see the option. */
  private async readEachStream(slots: number, blockMs: number): Promise<void> {
    const { streams } = this.options;
    const start = this.rotation++ % streams.length;
    const turn = streams.map((_, i) => streams[(start + i) % streams.length]!);
    if (await this.backingOff(turn, blockMs)) return;
    const now = Date.now();
    const ready = turn.filter((stream) => (this.failedReads.get(stream)?.retryAt ?? 0) <= now);
    if (ready.length > 1) {
      let taken = 0;
      for (const stream of ready) {
        if (taken >= slots || this.state !== "running") return;
        taken += this.take(await this.readOrBackOff(stream, [stream], slots - taken, null));
      }
      if (taken > 0) return;
    }
    // Nothing waiting on any stream: wait for new entries on one of them, a different one each pass.
    const wait = streams.length > 1 ? Math.min(blockMs, MULTI_STREAM_BLOCK_MS) : blockMs;
    this.take(await this.readOrBackOff(ready[0]!, ready.slice(0, 1), slots, wait));
  }

  /**
   * While every one of `keys` (streams, or a read over several) waits out its backoff after a failed
   * read: waits (woken early by close()) up to the first retry time and returns true.
   */
  private async backingOff(keys: readonly string[], blockMs: number): Promise<boolean> {
    const now = Date.now();
    const retryAt = Math.min(...keys.map((key) => this.failedReads.get(key)?.retryAt ?? 0));
    if (retryAt <= now) return false;
    const until = Math.min(retryAt, now + blockMs);
    while (this.state === "running" && Date.now() < until) await this.waitForWake(until - Date.now());
    return true;
  }

  /**
   * A read of `streams`; a failure other than NOGROUP (a timeout, a node down) is reported and `key` is
   * not read again for a while (backing off up to READ_RETRY_MAX_MS): returns no entries.
   */
  private async readOrBackOff(
    key: string,
    streams: readonly string[],
    count: number,
    blockMs: number | null,
  ): Promise<StreamEntry[]> {
    try {
      const entries = await this.read(streams, count, blockMs);
      this.failedReads.delete(key);
      return entries;
    } catch (error) {
      if (isNoGroupError(error)) throw error;
      const failures = (this.failedReads.get(key)?.failures ?? 0) + 1;
      const policy = this.options.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
      const retryInMs = backoffDelay(failures, {
        baseMs: policy.baseMs,
        maxMs: Math.min(policy.maxMs, READ_RETRY_MAX_MS),
      });
      this.failedReads.set(key, { failures, retryAt: Date.now() + retryInMs });
      const { observer } = this.options;
      if (observer?.readFailed) observer.readFailed(key, error, retryInMs);
      else observer?.crashed?.("read", error, retryInMs);
      return [];
    }
  }

  private async read(streams: readonly string[], count: number, blockMs: number | null) {
    const { blockingPort, group, consumer } = this.options;
    const entries = await blockingPort.readGroup(group, consumer, streams, count, blockMs);
    this.readAt = Date.now();
    this.progressAt = this.readAt;
    return entries;
  }

  /** Dispatches what was read; returns how many entries it was. */
  private take(entries: StreamEntry[]): number {
    // Entries read while stopping stay pending for the reclaimer: no new work starts during the drain.
    if (this.state !== "running") return entries.length;
    for (const entry of entries) this.dispatch(entry);
    return entries.length;
  }

  private dispatch(entry: StreamEntry): void {
    const key = entryKey(entry.stream, entry.id);
    if (this.inFlight.has(key)) return;
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
          this.lastErrors.delete(key);
          await this.options.port.ack(entry.stream, this.options.group, [entry.id]);
          this.options.observer?.handled?.("ack");
        },
        (error) => {
          this.rememberError(key, error);
          this.options.observer?.handled?.("error");
          this.options.observer?.handlerFailed?.(entry, error);
        },
      )
      .catch((error) => this.options.observer?.handlerFailed?.(entry, error))
      .finally(() => {
        this.inFlight.delete(key);
        this.options.observer?.inFlight?.(this.inFlight.size);
        this.wake?.();
      });
    this.inFlight.set(key, work);
    this.options.observer?.inFlight?.(this.inFlight.size);
  }

  private rememberError(key: string, error: unknown): void {
    this.lastErrors.delete(key);
    this.lastErrors.set(key, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
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
        if (pending.deliveries >= maxDeliveries && !this.inFlight.has(entryKey(stream, pending.id))) {
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
      const fresh = entries.filter((entry) => !this.inFlight.has(entryKey(entry.stream, entry.id)));
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
    // One transaction (on one Redis; two commands in a Redis Cluster, see the port): no entry is
    // acknowledged without its dead letter, nor dead-lettered twice by a crash between the two.
    await port.deadLetterAtomically(stream, group, id, deadLetterStream, {
      source_stream: stream,
      source_id: id,
      reason,
      deliveries: String(pending.deliveries),
      last_consumer: pending.consumer,
      payload: JSON.stringify(entry?.fields ?? null),
      // Known when this process handled it last; another consumer's error is in that consumer's log.
      last_error: this.lastErrors.get(entryKey(stream, id)) ?? "unknown (handled by another consumer)",
      dead_lettered_at: new Date().toISOString(),
    });
    this.lastErrors.delete(entryKey(stream, id));
    this.options.observer?.deadLettered?.("max_deliveries");
    await this.options.behaviour.onDeadLettered?.(entry ?? { stream, id, fields: null }, reason);
  }
}
