/**
 * Group commit: calls that arrive within `windowMs` of each other (or until `maxBatch` are waiting) share
 * one write to the store, and each caller still gets only its own result: `flush` returns one outcome
 * per item, in order (an Error = this item's failure; anything else is what its caller's promise
 * resolves to: null for a plain write).
 *
 * At most `maxConcurrentFlushes` batches are at the store at once; later items wait in the next batch,
 * which grows up to `maxBatch` meanwhile (the store's slowness widens batches instead of queueing calls).
 */
export interface GroupCommitOptions<I, R = null> {
  windowMs: number;
  maxBatch: number;
  maxConcurrentFlushes: number;
  /**
   * With no batch at the store, write what this turn of the event loop submitted at once instead of
   * waiting `windowMs` (default false). A lone caller then pays no window; under load the batches still
   * form, while earlier ones are being written.
   */
  flushWhenIdle?: boolean;
  flush(items: I[]): Promise<(Error | R)[]>;
}

interface Waiting<I, R> {
  item: I;
  resolve(result: R): void;
  reject(error: Error): void;
}

export function createGroupCommit<I, R = null>(options: GroupCommitOptions<I, R>) {
  let queue: Waiting<I, R>[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let nextTurn: ReturnType<typeof setImmediate> | undefined;
  let flushing = 0;

  function schedule(): void {
    if (queue.length === 0 || flushing >= options.maxConcurrentFlushes) return;
    if (queue.length >= options.maxBatch) {
      void flushNow();
      return;
    }
    if (options.flushWhenIdle && flushing === 0) {
      nextTurn ??= setImmediate(flushNow);
      return;
    }
    timer ??= setTimeout(flushNow, options.windowMs);
  }

  async function flushNow(): Promise<void> {
    clearTimeout(timer);
    timer = undefined;
    clearImmediate(nextTurn);
    nextTurn = undefined;
    if (queue.length === 0 || flushing >= options.maxConcurrentFlushes) return;
    const batch = queue.slice(0, options.maxBatch);
    queue = queue.slice(batch.length);
    flushing += 1;
    try {
      const results = await options.flush(batch.map((waiting) => waiting.item));
      batch.forEach((waiting, i) => {
        const result = results[i];
        if (result === undefined) waiting.reject(new Error("group commit returned no result for this item"));
        else if (result instanceof Error) waiting.reject(result);
        else waiting.resolve(result);
      });
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const waiting of batch) waiting.reject(failure);
    } finally {
      flushing -= 1;
      schedule();
    }
  }

  return {
    submit(item: I): Promise<R> {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        schedule();
      });
    },
    get pending(): number {
      return queue.length;
    },
  };
}
