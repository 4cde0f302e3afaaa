/**
 * One process's Prometheus metrics, read over its operations port. Apart from cluster.ts, which loads
 * the whole harness, so that faults.ts (imported by the pure checker tests) can read a gauge.
 */

/** The sum of every sample of `name` in a process's /metrics whose labels include `labels`. */
export async function metricSum(
  service: { opsUrl: string },
  name: string,
  labels: Record<string, string> = {},
): Promise<number | null> {
  const response = await fetch(`${service.opsUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await response.text();
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    const match = line.match(/^([A-Za-z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      sum = (sum ?? 0) + Number(match[4]);
    }
  }
  return sum;
}
