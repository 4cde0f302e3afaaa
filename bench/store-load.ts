/** What the store and client benchmarks share: order ids, the write concern, a worker pool. */

/** The service's durable write concern (majority, journaled), without durableWrite()'s per-call deadline. */
export const DURABLE = { writeConcern: { w: "majority" as const, j: true } };

/** A UUIDv7-shaped order id, the same for the same `i`. */
export const benchOrderId = (i: number) => `01930000-0000-7000-8000-${String(i).padStart(12, "0")}`;

/** Runs `run(0 .. count-1)`, `concurrency` at a time. */
export async function inParallel(
  count: number,
  concurrency: number,
  run: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await run(next++);
    }),
  );
}
