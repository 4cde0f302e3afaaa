/**
 * Renders the latency figure that solution.md embeds, as hand-written SVG (no dependencies):
 *   A. POST /orders p50/p90/p99 per phase of bench/latency-under-outage.ts (healthy vs failing venue);
 *   B. the chaos run's POST /orders p50/p99 per second with each fault's window shaded.
 * A panel whose input is missing is left out.
 *
 *   bun bench/chart.ts [--outage reports/bench-outage.json] [--chaos reports/chaos.json]
 *                      [--out docs/figures/latency.svg] [--smoke]
 *
 * --smoke renders from built-in sample data to a temporary file (CI: the renderer itself works).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const ROOT = resolve(import.meta.dir, "..");
const { values: args } = parseArgs({
  options: {
    outage: { type: "string" },
    chaos: { type: "string" },
    out: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});

interface OutagePhase {
  phase: string;
  latencyMs: { p50: number | null; p90: number | null; p99: number | null };
  requestsPerSecond: number;
  venue: { submissionsPerSecond: number };
}
interface OutageReport {
  phases: OutagePhase[];
  config: { concurrency: number; durationS: number };
  machine: { cpus: number; mongo: string };
}
interface ChaosPoint {
  t: number;
  p50: number | null;
  p99: number | null;
  count: number;
}
interface ChaosFault {
  kind: string;
  startMs: number;
  endMs: number;
}
interface ChaosReport {
  config: { orders: number; durationS: number; seed: string; actors: number };
  latency: { timeline: ChaosPoint[] };
  faults: { list: ChaosFault[] };
  ok: boolean;
}

const WIDTH = 960;
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const SERIES = { p50: "#4C78A8", p90: "#F2A541", p99: "#D62728" } as const;
const FAULT_COLORS: Record<string, string> = {
  "actor-kill": "#9ecae1",
  "actor-stop": "#c6dbef",
  "redis-restart-empty": "#fdd0a2",
  "mongo-restart": "#c7e9c0",
  "venue-outage": "#fcbba1",
  "api-kill": "#dadaeb",
};

const esc = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fmt = (value: number) =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);

/** Round tick steps (1, 2, 5 x 10^n) from 0 to at least `max`. */
function ticks(max: number, count = 5): number[] {
  const safe = max > 0 ? max : 1;
  const raw = safe / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const out: number[] = [];
  for (let v = 0; v <= safe + step * 0.999; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

function text(x: number, y: number, content: string, extra = ""): string {
  const size = extra.includes("font-size") ? "" : ' font-size="12"';
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${FONT}${size} ${extra}>${esc(content)}</text>`;
}

function axes(
  x0: number,
  y0: number,
  w: number,
  h: number,
  tickValues: number[],
  scale: (v: number) => number,
  unit: string,
): string[] {
  const out: string[] = [];
  for (const v of tickValues) {
    const y = scale(v);
    out.push(`<line x1="${x0}" y1="${y.toFixed(1)}" x2="${x0 + w}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(text(x0 - 6, y + 4, v === 0 ? "0" : fmt(v), 'text-anchor="end" fill="#555"'));
  }
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y0 + h}" stroke="#333"/>`);
  out.push(`<line x1="${x0}" y1="${y0 + h}" x2="${x0 + w}" y2="${y0 + h}" stroke="#333"/>`);
  out.push(
    text(
      x0 - 44,
      y0 + h / 2,
      unit,
      `transform="rotate(-90 ${x0 - 44} ${y0 + h / 2})" text-anchor="middle" fill="#333"`,
    ),
  );
  return out;
}

function outagePanel(report: OutageReport, top: number): { svg: string[]; height: number } {
  const height = 300;
  const x0 = 80;
  const y0 = top + 50;
  const w = WIDTH - x0 - 40;
  const h = height - 110;
  const keys = ["p50", "p90", "p99"] as const;
  const max = Math.max(1, ...report.phases.flatMap((p) => keys.map((k) => p.latencyMs[k] ?? 0)));
  const tickValues = ticks(max);
  const top_ = tickValues[tickValues.length - 1] ?? max;
  const scale = (v: number) => y0 + h - (v / top_) * h;
  const out: string[] = [];
  out.push(
    text(
      x0 - 60,
      top + 20,
      `A. POST /orders latency: venue healthy, failing 100%, down; and with the actors paused (concurrency ${report.config.concurrency}, ${report.config.durationS} s per phase)`,
      'font-size="14" font-weight="bold"',
    ),
  );
  out.push(...axes(x0, y0, w, h, tickValues, scale, "latency (ms)"));
  const group = w / report.phases.length;
  const bar = Math.min(40, (group * 0.7) / keys.length);
  report.phases.forEach((phase, i) => {
    const gx = x0 + group * i + (group - bar * keys.length) / 2;
    keys.forEach((key, j) => {
      const value = phase.latencyMs[key] ?? 0;
      const y = scale(value);
      out.push(
        `<rect x="${(gx + j * bar).toFixed(1)}" y="${y.toFixed(1)}" width="${(bar - 2).toFixed(1)}" height="${(y0 + h - y).toFixed(1)}" fill="${SERIES[key]}"><title>${esc(`${phase.phase} ${key}: ${fmt(value)} ms`)}</title></rect>`,
      );
      out.push(
        text(
          gx + j * bar + (bar - 2) / 2,
          y - 4,
          fmt(value),
          'text-anchor="middle" font-size="10" fill="#333"',
        ),
      );
    });
    out.push(text(x0 + group * i + group / 2, y0 + h + 18, phase.phase, 'text-anchor="middle" fill="#333"'));
    out.push(
      text(
        x0 + group * i + group / 2,
        y0 + h + 34,
        `${fmt(phase.requestsPerSecond)} req/s, venue ${fmt(phase.venue.submissionsPerSecond)} subm/s`,
        'text-anchor="middle" font-size="10" fill="#777"',
      ),
    );
  });
  keys.forEach((key, j) => {
    const lx = x0 + w - 190 + j * 65;
    out.push(`<rect x="${lx}" y="${top + 32}" width="12" height="12" fill="${SERIES[key]}"/>`);
    out.push(text(lx + 16, top + 43, key));
  });
  return { svg: out, height };
}

function chaosPanel(report: ChaosReport, top: number): { svg: string[]; height: number } {
  const height = 340;
  const x0 = 80;
  const y0 = top + 60;
  const w = WIDTH - x0 - 40;
  const h = height - 120;
  const points = report.latency.timeline;
  const lastT = Math.max(1, ...points.map((p) => p.t + 1));
  const max = Math.max(1, ...points.map((p) => p.p99 ?? 0));
  const tickValues = ticks(max);
  const top_ = tickValues[tickValues.length - 1] ?? max;
  const sx = (t: number) => x0 + (t / lastT) * w;
  const sy = (v: number) => y0 + h - (v / top_) * h;
  const out: string[] = [];
  const c = report.config;
  out.push(
    text(
      x0 - 60,
      top + 20,
      "B. Chaos run: POST /orders latency per second, fault windows shaded",
      'font-size="14" font-weight="bold"',
    ),
  );
  out.push(
    text(
      x0 - 60,
      top + 38,
      `${c.orders} orders, ${c.durationS} s of faults, seed ${c.seed}, ${c.actors} actor processes; check result: ${report.ok ? "no violation" : "VIOLATIONS"}`,
      'font-size="11" fill="#555"',
    ),
  );
  for (const fault of report.faults.list) {
    const x = sx(fault.startMs / 1000);
    const width = Math.max(1, sx(fault.endMs / 1000) - x);
    out.push(
      `<rect x="${x.toFixed(1)}" y="${y0}" width="${width.toFixed(1)}" height="${h}" fill="${FAULT_COLORS[fault.kind] ?? "#eee"}" opacity="0.8"><title>${esc(`${fault.kind} ${(fault.startMs / 1000).toFixed(1)}-${(fault.endMs / 1000).toFixed(1)} s`)}</title></rect>`,
    );
  }
  out.push(...axes(x0, y0, w, h, tickValues, sy, "latency (ms)"));
  for (const t of ticks(lastT, 10).filter((t) => t <= lastT)) {
    out.push(text(sx(t), y0 + h + 16, `${t}`, 'text-anchor="middle" font-size="10" fill="#555"'));
  }
  out.push(
    text(x0 + w / 2, y0 + h + 32, "seconds since the load started", 'text-anchor="middle" fill="#333"'),
  );
  for (const key of ["p50", "p99"] as const) {
    const path = points
      .filter((p) => p[key] !== null)
      .map((p, i) => `${i === 0 ? "M" : "L"}${sx(p.t + 0.5).toFixed(1)},${sy(p[key] as number).toFixed(1)}`)
      .join(" ");
    if (path) out.push(`<path d="${path}" fill="none" stroke="${SERIES[key]}" stroke-width="1.6"/>`);
  }
  let lx = x0;
  const ly = y0 + h + 50;
  for (const key of ["p50", "p99"] as const) {
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 16}" y2="${ly - 4}" stroke="${SERIES[key]}" stroke-width="2"/>`,
    );
    out.push(text(lx + 20, ly, key));
    lx += 60;
  }
  for (const [kind, color] of Object.entries(FAULT_COLORS)) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${color}"/>`);
    out.push(text(lx + 16, ly, kind, 'font-size="11"'));
    lx += 24 + kind.length * 6.5;
  }
  return { svg: out, height };
}

export function renderChart(outage: OutageReport | null, chaos: ChaosReport | null): string {
  const parts: string[] = [];
  let y = 0;
  if (outage) {
    const panel = outagePanel(outage, y);
    parts.push(...panel.svg);
    y += panel.height;
  }
  if (chaos) {
    const panel = chaosPanel(chaos, y);
    parts.push(...panel.svg);
    y += panel.height;
  }
  if (parts.length === 0) throw new Error("nothing to draw: no outage benchmark and no chaos report");
  const machine = outage?.machine;
  const footer = machine ? `${machine.cpus} CPUs, MongoDB-wire server: ${machine.mongo}` : "";
  y += 10;
  parts.push(text(WIDTH - 10, y - 4, footer, 'text-anchor="end" font-size="10" fill="#777"'));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}">`,
    `<rect width="${WIDTH}" height="${y}" fill="#fff"/>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

function sampleData(): { outage: OutageReport; chaos: ChaosReport } {
  const phase = (name: string, p50: number, p99: number): OutagePhase => ({
    phase: name,
    latencyMs: { p50, p90: (p50 + p99) / 2, p99 },
    requestsPerSecond: 100,
    venue: { submissionsPerSecond: 10 },
  });
  return {
    outage: {
      phases: [
        phase("healthy", 10, 40),
        phase("failing", 11, 42),
        phase("outage", 10, 39),
        phase("healthy-again", 12, 45),
      ],
      config: { concurrency: 16, durationS: 10 },
      machine: { cpus: 2, mongo: "sample" },
    },
    chaos: {
      config: { orders: 100, durationS: 20, seed: "sample", actors: 2 },
      latency: {
        timeline: Array.from({ length: 20 }, (_, t) => ({
          t,
          p50: 10 + (t % 3),
          p99: 40 + (t % 5) * 10,
          count: 5,
        })),
      },
      faults: {
        list: [
          { kind: "venue-outage", startMs: 3_000, endMs: 7_000 },
          { kind: "api-kill", startMs: 10_000, endMs: 11_500 },
        ],
      },
      ok: true,
    },
  };
}

function readJson<T>(path: string): T | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as T) : null;
}

if (import.meta.main) {
  let outage: OutageReport | null;
  let chaos: ChaosReport | null;
  let outPath: string;
  if (args.smoke) {
    ({ outage, chaos } = sampleData());
    outPath = args.out ? resolve(ROOT, args.out) : join(tmpdir(), "orders-latency-smoke.svg");
  } else {
    outage = readJson<OutageReport>(resolve(ROOT, args.outage ?? "reports/bench-outage.json"));
    chaos = readJson<ChaosReport>(resolve(ROOT, args.chaos ?? "reports/chaos.json"));
    outPath = resolve(ROOT, args.out ?? "docs/figures/latency.svg");
  }
  const svg = renderChart(outage, chaos);
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, svg);
  console.log(
    `chart: ${outPath} (${[outage ? "outage benchmark" : null, chaos ? "chaos timeline" : null].filter(Boolean).join(" + ")})`,
  );
}
