/**
 * Runs `task` every `intervalMs` (never overlapping itself) until stopped. With `maxDutyCycle`, a slow
 * run stretches the pause after it, so that the task takes at most that share of the time: a scan that
 * grows with a backlog (on a store that cannot serve it from an index) then cannot starve the store.
 */
export function every(
  intervalMs: number,
  task: () => Promise<unknown>,
  onError: (error: unknown) => void,
  options: { maxDutyCycle?: number } = {},
): { stop(): Promise<void> } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    if (stopped) return;
    const started = performance.now();
    running = task()
      .catch(onError)
      .finally(() => {
        const tookMs = performance.now() - started;
        const stretched = options.maxDutyCycle
          ? (tookMs * (1 - options.maxDutyCycle)) / options.maxDutyCycle
          : 0;
        if (!stopped) timer = setTimeout(tick, Math.max(intervalMs, stretched));
      });
  };
  timer = setTimeout(tick, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
