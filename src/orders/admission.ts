/**
 * Load shedding at intake. When the order store stops keeping up (a stalled or failing-over MongoDB, a
 * store saturated by a backlog), every new POST /orders would wait at the store until its deadline and
 * then get the 500 "maybe stored": the client learns nothing for REQUEST_DEADLINE_MS, its order may or
 * may not exist, and the queue of waiting requests keeps the store busy after it recovers.
 *
 * Instead, once one of the intake's own store steps has waited `shedAfterMs` without an answer, new
 * orders are refused before they touch the store: 503 with Retry-After, and nothing stored, so the
 * client may retry with or without an Idempotency-Key. Requests already at the store go on as before.
 * As soon as the step that waited too long settles (answered, failed, or aborted by its own deadline),
 * orders are admitted again: a store that is still stuck sees one new step at a time and sheds again
 * after `shedAfterMs`, like a breaker's half-open trial.
 *
 * The signal is the oldest step still waiting, not a latency average: a store that stopped answering
 * produces no latencies to average.
 */
import { IntakeOverloadedError } from "../domain/errors.ts";

export interface IntakeAdmissionOptions {
  /** Refuse new orders while a store step has waited at least this long; 0 turns shedding off. */
  shedAfterMs: number;
  now?: () => number;
  onShed?(oldestWaitMs: number): void;
}

export class IntakeAdmission {
  /** Start time of each step still waiting; a Map keeps insertion order, so the first is the oldest. */
  private readonly waiting = new Map<number, number>();
  private nextStep = 0;
  private readonly now: () => number;

  constructor(private readonly options: IntakeAdmissionOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /** How long the oldest intake step still at the store has waited (0 when none is). */
  oldestWaitMs(): number {
    const first = this.waiting.values().next();
    return first.done ? 0 : Math.max(0, this.now() - first.value);
  }

  /** Throws IntakeOverloadedError when a new order must not go to the store now. */
  admit(): void {
    if (this.options.shedAfterMs === 0) return;
    const oldest = this.oldestWaitMs();
    if (oldest < this.options.shedAfterMs) return;
    this.options.onShed?.(oldest);
    throw new IntakeOverloadedError(Math.max(1, Math.ceil(this.options.shedAfterMs / 1000)));
  }

  /** Runs one store step of an admitted order, counted as waiting until it settles. */
  async track<T>(step: () => Promise<T>): Promise<T> {
    const id = this.nextStep++;
    this.waiting.set(id, this.now());
    try {
      return await step();
    } finally {
      this.waiting.delete(id);
    }
  }
}
