/**
 * Load shedding at intake. When the order store stops answering (a stalled or failing-over MongoDB, a
 * store saturated by a backlog), every new POST /orders would wait at the store until its deadline and
 * get the 500 "maybe stored": the client learns nothing for REQUEST_DEADLINE_MS, its order may or may
 * not exist (and has to be withdrawn), and the requests queued behind the stall keep the store busy
 * after it recovers.
 *
 * A breaker on the store's answers instead, with `shedAfterMs` (T) as its one setting:
 * - closed: every order is admitted. One of intake's store steps that has waited T unanswered (still
 *   waiting, or settled only after T, failed or not) opens it.
 * - open for OPEN_MS (at most T): new orders are refused before they touch the store: 503 with
 *   Retry-After, nothing stored, so a retry is safe with or without an Idempotency-Key. Orders already
 *   at the store go on.
 * - half-open after that: one order is admitted as a trial (another one T later if the first never
 *   reached the store, say it was a 422); the rest are refused. A step answered within T closes the
 *   breaker; a step waiting T opens it again. While steps from before still wait, it stays open; a late
 *   answer while it is open (the store came back) makes it half-open at once.
 * During a long stall the store thus sees one trial order every T + OPEN_MS or so, not every order; once
 * it answers again, orders are admitted within OPEN_MS and a trial's round trip.
 *
 * The signal is how long steps wait, not a latency average: a store that stopped answering produces no
 * latencies to average, and the driver's own timeouts end its steps at MONGO_TIMEOUT_MS (2 s by
 * default, as T), so a step that failed after T counts as one still waiting.
 */
import { IntakeOverloadedError } from "../domain/errors.ts";

export interface IntakeAdmissionOptions {
  /** T above; 0 turns shedding off. */
  shedAfterMs: number;
  now?: () => number;
  onShed?(): void;
  onStateChange?(state: AdmissionState): void;
}

export type AdmissionState = "closed" | "open" | "half-open";

/**
 * How long the breaker stays open before its next trial. Short: a trial costs one order (a 500 if the
 * store is still stuck), and a long pause would hold orders back after the store recovered.
 */
export const OPEN_MS = 500;

export class IntakeAdmission {
  /** Start time of each step still waiting; a Map keeps insertion order, so the first is the oldest. */
  private readonly waiting = new Map<number, number>();
  private nextStep = 0;
  private state: AdmissionState = "closed";
  private openUntil = 0;
  /** When the half-open state last admitted a trial order (-Infinity: none yet). */
  private trialAt = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;

  constructor(private readonly options: IntakeAdmissionOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  get currentState(): AdmissionState {
    return this.state;
  }

  /** How long the oldest intake step still at the store has waited (0 when none is). */
  oldestWaitMs(): number {
    const first = this.waiting.values().next();
    return first.done ? 0 : Math.max(0, this.now() - first.value);
  }

  /** Throws IntakeOverloadedError when a new order must not go to the store now; call once per order. */
  admit(): void {
    const limit = this.options.shedAfterMs;
    if (limit === 0) return;
    const now = this.now();
    if (this.oldestWaitMs() >= limit) this.open(now);
    if (this.state === "open" && now >= this.openUntil) this.moveTo("half-open");
    if (this.state === "closed") return;
    if (this.state === "half-open" && now - this.trialAt >= limit) {
      this.trialAt = now;
      return;
    }
    this.options.onShed?.();
    // Whole seconds (RFC 9110), rounded up from the time to the next trial.
    throw new IntakeOverloadedError(Math.max(1, Math.ceil(Math.min(OPEN_MS, limit) / 1000)));
  }

  /** Runs one store step of an admitted order (or of its caller's key look-up), timing its wait. */
  async track<T>(step: () => Promise<T>): Promise<T> {
    const id = this.nextStep++;
    const started = this.now();
    this.waiting.set(id, started);
    let answered = false;
    try {
      const result = await step();
      answered = true;
      return result;
    } finally {
      this.waiting.delete(id);
      this.settled(this.now() - started, answered);
    }
  }

  private settled(waitedMs: number, answered: boolean): void {
    const limit = this.options.shedAfterMs;
    if (limit === 0) return;
    if (waitedMs < limit) {
      if (this.state === "half-open") this.moveTo("closed");
    } else if (answered && this.state !== "closed") {
      // A late answer while shedding: the store is back, or nearly. Try it now rather than in T.
      this.moveTo("half-open");
      this.trialAt = Number.NEGATIVE_INFINITY;
    } else {
      this.open(this.now());
    }
  }

  private open(now: number): void {
    this.openUntil = now + Math.min(OPEN_MS, this.options.shedAfterMs);
    this.trialAt = Number.NEGATIVE_INFINITY;
    this.moveTo("open");
  }

  private moveTo(state: AdmissionState): void {
    if (this.state === state) return;
    this.state = state;
    this.options.onStateChange?.(state);
  }
}
