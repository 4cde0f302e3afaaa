/** What every benchmark does last: write its JSON report, then exit with the code its run decided. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export function writeJsonReport(path: string, report: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/**
 * Runs a benchmark's main and exits: with the code main returns (0 when it returns nothing), or with
 * `crashCode` and the stack when it throws. Exiting explicitly also ends clients that keep the event
 * loop alive.
 */
export function runBenchmark(name: string, main: () => Promise<number | undefined>, crashCode = 1): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (error) => {
      process.stderr.write(`${name}: ${String((error as Error)?.stack ?? error)}\n`);
      process.exit(crashCode);
    },
  );
}

/**
 * A benchmark's numeric options checked before it starts anything: a value that is not a positive number
 * ends the run with a usage error (exit 2) that names the option.
 */
export function exitUnlessPositive(name: string, options: readonly (readonly [string, number])[]): void {
  for (const [option, value] of options) {
    if (Number.isFinite(value) && value > 0) continue;
    console.error(`${name}: ${option} must be a positive number`);
    process.exit(2);
  }
}
