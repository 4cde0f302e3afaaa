/**
 * Runs a long-lived loop and restarts it with backoff when it crashes. The backoff resets once the loop
 * has run for a while, so a rare crash restarts fast and a crash loop slows down.
 */
import { type BackoffPolicy, backoffDelay } from "../../src/support/backoff.ts";

export interface SupervisorOptions {
  name: string;
  backoff: BackoffPolicy;
  /** A run this long counts as healthy and resets the backoff. */
  healthyAfterMs?: number;
  onCrash?(error: unknown, restartInMs: number): void;
  isStopping(): boolean;
  sleep?(ms: number): Promise<void>;
}

export async function supervise(loop: () => Promise<void>, options: SupervisorOptions): Promise<void> {
  const sleep = options.sleep ?? ((ms: number) => Bun.sleep(ms));
  let crashes = 0;
  while (!options.isStopping()) {
    const started = Date.now();
    try {
      await loop();
      if (options.isStopping()) return;
      throw new Error(`${options.name} loop returned while running`);
    } catch (error) {
      if (options.isStopping()) return;
      if (Date.now() - started > (options.healthyAfterMs ?? 30_000)) crashes = 0;
      crashes += 1;
      const delay = backoffDelay(crashes, options.backoff);
      options.onCrash?.(error, delay);
      await sleep(delay);
    }
  }
}
