/** The periodic runner's duty-cycle cap stretches the pause after a slow run (a lower bound: no timing flake). */
import { expect, test } from "bun:test";
import { every } from "../../src/support/periodic.ts";

async function gapsBetweenRuns(taskMs: number, options: { maxDutyCycle?: number }): Promise<number[]> {
  const starts: number[] = [];
  const timer = every(
    10,
    async () => {
      starts.push(performance.now());
      await Bun.sleep(taskMs);
    },
    () => {},
    options,
  );
  while (starts.length < 4) await Bun.sleep(5);
  await timer.stop();
  return starts.slice(1).map((start, i) => start - starts[i]!);
}

test("with maxDutyCycle 0.2, a 40 ms run is followed by a pause of at least 160 ms", async () => {
  for (const gap of await gapsBetweenRuns(40, { maxDutyCycle: 0.2 })) expect(gap).toBeGreaterThanOrEqual(195);
});
