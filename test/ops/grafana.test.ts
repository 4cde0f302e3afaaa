/**
 * k8s/grafana: the dashboard against a strict schema generated from @grafana/schema's types (the
 * dashboard model, and each panel's options and custom field config against its panel plugin's
 * types), unique panel ids, a layout without overlaps, every query on the dashboard's datasource
 * variable, and provisioning that points where docker-compose.yml mounts the files.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { ValidateFunction } from "ajv";
import {
  createAjv,
  dashboardFiles,
  dashboardPanels,
  type Json,
  K8S,
  parseYaml,
  ROOT,
  readText,
  rel,
  schemaErrors,
  schemaFromTypes,
} from "../support/ops.ts";

const SCHEMA_TYPES = "node_modules/@grafana/schema/dist/types";
const ajv = createAjv();

function compile(files: string, type: string): ValidateFunction {
  return ajv.compile(schemaFromTypes(files, [type]).get(type)!);
}

const dashboardSchema = compile(`${SCHEMA_TYPES}/raw/dashboard/x/types.gen.d.ts`, "Dashboard");
/** Panel plugin -> validators of its `options` and `fieldConfig.defaults.custom`. */
const panelSchemas: Record<string, { options: ValidateFunction; custom?: ValidateFunction }> = {
  timeseries: {
    options: compile(`${SCHEMA_TYPES}/raw/composable/timeseries/panelcfg/x/types.gen.d.ts`, "Options"),
    custom: compile(`${SCHEMA_TYPES}/raw/composable/timeseries/panelcfg/x/types.gen.d.ts`, "FieldConfig"),
  },
  stat: { options: compile(`${SCHEMA_TYPES}/raw/composable/stat/panelcfg/x/types.gen.d.ts`, "Options") },
  "state-timeline": {
    options: compile(`${SCHEMA_TYPES}/raw/composable/statetimeline/panelcfg/x/types.gen.d.ts`, "Options"),
    custom: compile(`${SCHEMA_TYPES}/raw/composable/statetimeline/panelcfg/x/types.gen.d.ts`, "FieldConfig"),
  },
};
/** Fields of a Prometheus query target that Grafana's Prometheus datasource knows. */
const PROMETHEUS_TARGET_FIELDS = new Set([
  "datasource",
  "refId",
  "expr",
  "legendFormat",
  "range",
  "instant",
  "exemplar",
  "format",
  "interval",
  "intervalFactor",
  "editorMode",
  "hide",
]);

const dashboards = dashboardFiles().map((file) => ({ file, dashboard: JSON.parse(readText(file)) as Json }));

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  options?: unknown;
  fieldConfig?: { defaults?: { custom?: unknown } };
  targets?: Json[];
}

describe("grafana dashboard", () => {
  test("there is a dashboard", () => {
    expect(dashboards.map(({ file }) => rel(file))).toEqual(["k8s/grafana/dashboards/orders.json"]);
  });

  for (const { file, dashboard } of dashboards) {
    const panels = dashboardPanels(dashboard) as unknown as Panel[];

    test(`${rel(file)} matches the Dashboard schema of @grafana/schema`, () => {
      expect(schemaErrors(dashboardSchema, dashboard)).toBe("");
    });

    test(`${rel(file)}: the schema catches a misspelt field`, () => {
      const broken = structuredClone(dashboard);
      (broken.panels as Json[])[1]!.gridpos = { x: 0, y: 0, w: 1, h: 1 };
      expect(schemaErrors(dashboardSchema, broken)).toContain("gridpos");
    });

    test(`${rel(file)}: panel options and custom field config match their plugin's types`, () => {
      const problems: string[] = [];
      for (const panel of panels.filter((p) => p.type !== "row")) {
        const schemas = panelSchemas[panel.type];
        if (!schemas) {
          problems.push(`panel ${panel.id}: no schema for panel type ${panel.type}`);
          continue;
        }
        const optionErrors = schemaErrors(schemas.options, panel.options ?? {});
        if (optionErrors) problems.push(`panel ${panel.id} "${panel.title}" options: ${optionErrors}`);
        const custom = panel.fieldConfig?.defaults?.custom;
        if (custom !== undefined) {
          const customErrors = schemas.custom
            ? schemaErrors(schemas.custom, custom)
            : "no custom field config for this panel type";
          if (customErrors) problems.push(`panel ${panel.id} "${panel.title}" custom: ${customErrors}`);
        }
      }
      expect(problems).toEqual([]);
    });

    test(`${rel(file)}: panel ids are unique and the layout has no overlaps`, () => {
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of panels) {
        expect(p.gridPos.x + p.gridPos.w, `panel ${p.id} fits 24 columns`).toBeLessThanOrEqual(24);
      }
      for (const [i, a] of panels.entries()) {
        for (const b of panels.slice(i + 1)) {
          const overlap =
            a.gridPos.x < b.gridPos.x + b.gridPos.w &&
            b.gridPos.x < a.gridPos.x + a.gridPos.w &&
            a.gridPos.y < b.gridPos.y + b.gridPos.h &&
            b.gridPos.y < a.gridPos.y + a.gridPos.h;
          expect(overlap, `panels ${a.id} and ${b.id} overlap`).toBe(false);
        }
      }
    });

    test(`${rel(file)}: every query uses the datasource variable and only Prometheus target fields`, () => {
      const variables = (
        (dashboard.templating as { list: { name: string; type: string; query?: string }[] }).list ?? []
      ).filter((v) => v.type === "datasource" && v.query === "prometheus");
      expect(variables.length).toBe(1);
      const ref = `\${${variables[0]!.name}}`;
      for (const panel of panels.filter((p) => p.type !== "row")) {
        expect(panel.datasource, `panel ${panel.id}`).toEqual({ type: "prometheus", uid: ref });
        expect(panel.targets?.length, `panel ${panel.id} has queries`).toBeGreaterThan(0);
        const refIds = new Set<string>();
        for (const target of panel.targets ?? []) {
          expect(
            Object.keys(target).filter((k) => !PROMETHEUS_TARGET_FIELDS.has(k)),
            `panel ${panel.id}`,
          ).toEqual([]);
          expect(target.datasource, `panel ${panel.id}`).toEqual({ type: "prometheus", uid: ref });
          expect(typeof target.expr).toBe("string");
          refIds.add(String(target.refId));
        }
        expect(refIds.size, `panel ${panel.id} refIds are unique`).toBe(panel.targets!.length);
      }
    });
  }

  test("the Execution reports row shows the feed, the gateway lease, the apply path and client events", () => {
    const { dashboard } = dashboards[0]!;
    const panels = dashboard.panels as Panel[];
    const row = panels.findIndex((p) => p.type === "row" && p.title === "Execution reports");
    expect(row).toBeGreaterThanOrEqual(0);
    const next = panels.findIndex((p, i) => i > row && p.type === "row");
    const inRow = panels.slice(row + 1, next === -1 ? undefined : next);
    const exprs = inRow.flatMap((p) => (p.targets ?? []).map((t) => String(t.expr))).join("\n");
    for (const name of [
      "executions_reports_received_total",
      "executions_reports_applied_total",
      "executions_apply_lag_seconds_bucket",
      "executions_apply_batch_size_bucket",
      "executions_stream_lag",
      "executions_stream_pending",
      "executions_sequence_gaps_total",
      "executions_gap_open_seconds",
      "executions_feed_reconnects_total",
      "executions_gateway_active",
      "orders_events_subscribers",
    ])
      expect(exprs, name).toContain(name);
    // Every kind registers every gauge (an API pod exports the gateway's at 0): gauges are selected by
    // the kinds that set them.
    for (const gauge of ["executions_gateway_active", "executions_gap_open_seconds", "executions_stream_lag"])
      for (const m of exprs.matchAll(new RegExp(`${gauge}(\\{[^}]*\\})?`, "g")))
        expect(m[1] ?? "", `${gauge} selects its process kinds`).toContain("process_kind=~");
  });

  test("provisioning: the datasource uid is the dashboard variable's default and paths match compose", () => {
    const datasources = parseYaml(join(K8S, "grafana/provisioning/datasources/prometheus.yml")) as {
      apiVersion: number;
      datasources: { uid: string; type: string; url: string }[];
    };
    expect(datasources.apiVersion).toBe(1);
    const [datasource] = datasources.datasources;
    expect(datasource?.type).toBe("prometheus");
    for (const { dashboard } of dashboards) {
      const variable = (
        dashboard.templating as { list: { type: string; current?: { value?: string } }[] }
      ).list.find((v) => v.type === "datasource");
      expect(variable?.current?.value).toBe(datasource!.uid);
    }
    const compose = parseYaml(join(ROOT, "docker-compose.yml")) as {
      services: Record<string, { volumes?: string[]; environment?: Record<string, string> }>;
    };
    const prometheusPort = new URL(datasource!.url);
    expect(Object.keys(compose.services)).toContain(prometheusPort.hostname);
    const providers = parseYaml(join(K8S, "grafana/provisioning/dashboards/orders.yml")) as {
      apiVersion: number;
      providers: { type: string; options: { path: string } }[];
    };
    expect(providers.apiVersion).toBe(1);
    const grafanaVolumes = compose.services.grafana?.volumes ?? [];
    for (const provider of providers.providers) {
      expect(provider.type).toBe("file");
      const mount = grafanaVolumes.find((v) => v.split(":")[1] === provider.options.path);
      expect(mount, `a compose volume mounts ${provider.options.path}`).toBeDefined();
      expect(mount!.split(":")[0]).toBe("./k8s/grafana/dashboards");
    }
    const home = compose.services.grafana?.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    if (home) expect(dashboards.map(({ file }) => file.split("/").pop())).toContain(home.split("/").pop());
  });
});
