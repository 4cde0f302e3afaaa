/** Deterministic randomness for tests that inject `random()`. */

/** Returns the given numbers in turn and fails loudly when the test did not plan for another draw. */
export function sequence(...values: number[]): () => number {
  return () => {
    const next = values.shift();
    if (next === undefined) throw new Error("random() drawn more often than the test planned");
    return next;
  };
}

/** mulberry32: a small seeded generator, so a statistical test gives the same answer on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
