/**
 * Every metric name that k8s/ uses (the ScaledObject, the rules, the dashboard) is exported by the
 * service, and every label it matches or groups on is one the metric has: checked against the
 * registries of src/adapters/metrics.ts for every process kind, and against the /metrics output of
 * a real process (the exchange subcommand, which needs no MongoDB or Redis and registers every family).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createMetrics, type ProcessKind } from "../../src/adapters/metrics.ts";
import {
  allPromqlUses,
  labelNamesIn,
  metricFamilies,
  metricNamesIn,
  type PromqlUse,
  recordedNames,
  type ServiceProcess,
  SYNTHETIC_SERIES,
  seriesNames,
  startExchangeFromSource,
  substituteGrafanaVariables,
  TARGET_LABELS,
} from "../support/ops.ts";

const KINDS: ProcessKind[] = ["api", "actors", "all", "exchange", "gateway", "executions"];
const uses = allPromqlUses();
const recorded = recordedNames();

/** Metric names the artifacts select, with where each is used. */
function referencedNames(): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const use of uses) {
    for (const name of metricNamesIn(substituteGrafanaVariables(use.expr))) {
      if (recorded.has(name) || SYNTHETIC_SERIES.has(name)) continue;
      names.set(name, [...(names.get(name) ?? []), use.where]);
    }
  }
  return names;
}

function missing(names: Map<string, string[]>, exported: Set<string>): string[] {
  return [...names]
    .filter(([name]) => !exported.has(name))
    .map(([name, where]) => `${name} (used in ${where.join("; ")})`);
}

/** Label names of each series name, from the registry's metric definitions. */
function labelsBySeries(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const kind of KINDS) {
    for (const metric of createMetrics(kind).registry.getMetricsAsArray()) {
      const { name, labelNames, type } = metric as unknown as {
        name: string;
        labelNames?: string[];
        type?: string;
      };
      const labels = new Set([...(labelNames ?? []), ...TARGET_LABELS]);
      const series = type === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
      for (const s of series)
        out.set(s, new Set([...(out.get(s) ?? []), ...labels, ...(s.endsWith("_bucket") ? ["le"] : [])]));
    }
  }
  return out;
}

describe("metric names used in k8s/", () => {
  test("the artifacts reference the metrics that drive scaling, alerts and the dashboard", () => {
    const names = referencedNames();
    for (const name of [
      "placement_stream_lag_entries",
      "placement_stream_pending_entries",
      "exchange_breaker_state",
      "placement_dead_lettered_total",
      "http_request_duration_seconds_count",
      "orders_internal_errors_total",
      "placement_outcomes_total",
      "placement_attempt_duration_seconds_bucket",
      "process_resident_memory_bytes",
      // The end-to-end monitor (alerts and dashboard) and the cost and duplicate panels.
      "placement_oldest_unfinished_order_age_seconds",
      "placement_parked_orders",
      "placement_venue_duplicates_total",
      "orders_mongo_operations_total",
      "orders_mongo_durable_writes_total",
      // Execution reports: the executions' KEDA trigger, their alerts and the dashboard row.
      "executions_stream_lag",
      "executions_stream_pending",
      "executions_reports_received_total",
      "executions_reports_applied_total",
      "executions_apply_lag_seconds_bucket",
      "executions_apply_batch_size_bucket",
      "executions_sequence_gaps_total",
      "executions_gap_open_seconds",
      "executions_feed_reconnects_total",
      "executions_gateway_active",
      "executions_feed_logged_on",
      "executions_last_sequence",
      "orders_events_published_total",
      "orders_events_subscribers",
      "venue_execution_reports_total",
    ]) {
      expect(names.has(name), name).toBe(true);
    }
  });

  test("the extraction finds names and ignores functions, keywords, labels and durations", () => {
    const expr =
      'sum by (namespace, reason) (x_total unless x_total offset 15m) > 0 or histogram_quantile(0.99, sum by (le) (rate(y_bucket{a="b"}[5m]))) * (max(z) < bool 2)';
    expect([...metricNamesIn(expr)].sort()).toEqual(["x_total", "y_bucket", "z"]);
    expect([...labelNamesIn(expr)].sort()).toEqual(["a", "le", "namespace", "reason"]);
  });

  test("every process kind registers every family, each sample labelled with its kind", async () => {
    // What lets every query select by process_kind alone: the gateway's and the execution actors'
    // registries hold the same families as the others' (an API pod exports their gauges at 0).
    const texts = new Map<ProcessKind, string>();
    for (const kind of KINDS) texts.set(kind, await createMetrics(kind).registry.metrics());
    const families = (kind: ProcessKind) => [...metricFamilies(texts.get(kind)!).keys()].sort();
    for (const kind of KINDS) expect(families(kind), kind).toEqual(families(KINDS[0]!));
    for (const kind of ["gateway", "executions"] as const) {
      const text = texts.get(kind)!;
      expect(text).toMatch(new RegExp(`^executions_stream_lag\\{process_kind="${kind}"\\} 0$`, "m"));
      expect(text).toMatch(new RegExp(`^executions_gateway_active\\{process_kind="${kind}"\\} 0$`, "m"));
    }
  }, 30_000);

  test("every name is registered by src/adapters/metrics.ts for some process kind", async () => {
    const exported = new Set<string>();
    for (const kind of KINDS) {
      for (const name of seriesNames(metricFamilies(await createMetrics(kind).registry.metrics())))
        exported.add(name);
    }
    expect(missing(referencedNames(), exported)).toEqual([]);
  });

  test("every matcher and grouping label exists on the metrics it applies to", () => {
    const labels = labelsBySeries();
    const allLabels = new Set([...labels.values()].flatMap((set) => [...set]));
    const problems: string[] = [];
    const check = (use: PromqlUse) => {
      const expr = substituteGrafanaVariables(use.expr);
      // Matchers attached to a metric name must be labels of that metric.
      for (const m of expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)) {
        const [, name, body] = m;
        const known = labels.get(name!);
        if (!known) continue;
        for (const matcher of body!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) {
          if (!known.has(matcher[1]!)) problems.push(`${use.where}: ${name} has no label ${matcher[1]}`);
        }
      }
      // Grouping labels must exist on some metric (recording rules keep them).
      for (const label of labelNamesIn(expr)) {
        if (!allLabels.has(label)) problems.push(`${use.where}: no metric has a label ${label}`);
      }
    };
    uses.forEach(check);
    expect(problems).toEqual([]);
  });

  describe("against a real process", () => {
    let exchange: ServiceProcess | undefined;
    let exposition = "";
    beforeAll(async () => {
      exchange = await startExchangeFromSource();
      const response = await fetch(`${exchange.opsUrl}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toContain("text/plain");
      exposition = await response.text();
    }, 60_000);
    afterAll(async () => {
      await exchange?.stop();
    }, 60_000);

    test("`bun src/main.ts exchange` exports every name used in k8s/", () => {
      expect(missing(referencedNames(), seriesNames(metricFamilies(exposition)))).toEqual([]);
    });

    test("its samples carry the process_kind default label", () => {
      expect(exposition).toMatch(/^process_resident_memory_bytes\{process_kind="exchange"\} \d+/m);
    });

    test("no heap-space gauges (a walk of Bun's whole heap per scrape); the heap is still reported", () => {
      expect(exposition).not.toContain("nodejs_heap_space_size");
      expect(exposition).toMatch(/^nodejs_heap_size_used_bytes\{process_kind="exchange"\} \d+/m);
    });
  });
});
