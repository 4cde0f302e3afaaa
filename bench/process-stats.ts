/**
 * Read-outs shared by the benchmarks (moved here from bench/system.ts, unchanged): a process's
 * Prometheus /metrics, CPU time of processes and servers from /proc, the machine's busy share, and a
 * plain-text table.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Servers } from "../test/support/system.ts";

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A process's /metrics, from its operations port. */
export async function scrape(target: { opsUrl: string }): Promise<MetricSample[]> {
  const response = await fetch(`${target.opsUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (response.status !== 200) throw new Error(`${target.opsUrl}/metrics answered ${response.status}`);
  const samples: MetricSample[] = [];
  for (const line of (await response.text()).split("\n")) {
    const match = line.match(/^([A-Za-z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = Object.fromEntries(
      [...(match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    samples.push({ name: match[1]!, labels, value: Number(match[4]) });
  }
  return samples;
}

/** The sum of every sample of `name` whose labels include `labels`. */
export function total(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

const CLOCK_TICKS_PER_S = 100;

/** [utime + stime, cutime + cstime] of a process in ms (0 when it is gone). */
export function processCpuMs(pid: number): [number, number] {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = (i: number) => (Number(fields[i]) * 1000) / CLOCK_TICKS_PER_S;
    return [ms(11) + ms(12), ms(13) + ms(14)];
  } catch {
    return [0, 0];
  }
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  args: string[];
}

export function processes(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean);
      out.push({ pid: Number(entry), ppid, args });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * CPU ms of the processes serving `port` (found by their command line: `--port N`, `-p N`,
 * `--listen-addr=host:N`) and all their descendants; reaped children count too.
 */
export function serverCpuMs(port: number): number {
  const all = processes();
  const roots = all.filter((p) => p.args.some((a) => a === String(port) || a.endsWith(`:${port}`)));
  const seen = new Set<number>();
  const stack = roots.map((p) => p.pid);
  let ms = 0;
  while (stack.length > 0) {
    const pid = stack.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const [own, children] = processCpuMs(pid);
    ms += own + children;
    for (const child of all) if (child.ppid === pid) stack.push(child.pid);
  }
  return ms;
}

/** Busy and total CPU ms of the whole machine since boot (all cores). */
export function machineCpuMs(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const ticks = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return {
    busy: ((ticks - idle) * 1000) / CLOCK_TICKS_PER_S,
    total: (ticks * 1000) / CLOCK_TICKS_PER_S,
  };
}

export interface CpuMeter {
  /** CPU ms per named process group since the meter started, and the machine's busy share. */
  read(extra?: Record<string, number>): Record<string, number>;
}

export function cpuMeter(groups: Record<string, () => number>): CpuMeter {
  const start = Object.fromEntries(Object.entries(groups).map(([name, read]) => [name, read()]));
  const machineStart = machineCpuMs();
  return {
    read(extra = {}) {
      const out: Record<string, number> = {};
      for (const [name, read] of Object.entries(groups)) out[name] = Math.round(read() - start[name]!);
      for (const [name, ms] of Object.entries(extra)) out[name] = Math.round(ms);
      const machine = machineCpuMs();
      out.machine_busy_percent =
        Math.round((1000 * (machine.busy - machineStart.busy)) / (machine.total - machineStart.total)) / 10;
      return out;
    },
  };
}

/** The MongoDB-wire server, and the PostgreSQL under it when it is FerretDB's (its own port). */
export function storeCpuMs(servers: Servers): number {
  const postgres = (servers.mongo as { postgres?: { port: number } }).postgres;
  return serverCpuMs(servers.mongo.port) + (postgres ? serverCpuMs(postgres.port) : 0);
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** A table of variants measured in turns: each one's median and range over its rounds. */
export function medianTable(header: string, results: Record<string, number[]>, digits = 1): string {
  const fixed = (value: number) => value.toFixed(digits);
  return table([
    ["variant", `${header} (median)`, "range"],
    ...Object.entries(results).map(([name, values]) => [
      name,
      fixed(median(values)),
      `${fixed(Math.min(...values))}-${fixed(Math.max(...values))}`,
    ]),
  ]);
}
