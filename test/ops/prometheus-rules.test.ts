/**
 * k8s/prometheus: promtool checks the scrape configurations and the rules, runs the rules' unit tests,
 * parses every PromQL expression of the dashboard, the rules and the ScaledObjects, and evaluates the
 * ScaledObjects' queries on made-up series: the placement actors' gates scaling on the breaker, the
 * execution actors' counts their lag once however many pods report it.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  allPromqlUses,
  checkPromql,
  expectSuccess,
  K8S,
  parseYaml,
  promtool,
  removeDir,
  ruleFiles,
  run,
  scaledObjectQueries,
  tempDir,
  UPSTREAM_PROMTOOL,
} from "../support/ops.ts";

const PROMETHEUS_DIR = join(K8S, "prometheus");

/** The query of the ScaledObject named `name` (k8s/base: actors, executions). */
function kedaQuery(name: string) {
  const found = scaledObjectQueries().filter((use) => use.where.split(" ")[1] === name);
  expect(found.map((use) => use.where)).toHaveLength(1);
  return found[0]!;
}

/** Runs promtool's rule unit tests on `testFile` (no rule files: expression tests only). */
async function promtoolExprTest(testFile: unknown, what: string): Promise<void> {
  const dir = tempDir("keda");
  try {
    const file = join(dir, "keda.test.yml");
    await Bun.write(file, JSON.stringify(testFile));
    expectSuccess(await promtool(["test", "rules", file]), `promtool test rules for ${what}`);
  } finally {
    removeDir(dir);
  }
}

describe("prometheus configuration and rules", () => {
  test("promtool accepts the compose scrape configuration and the rule files it loads", async () => {
    const result = await promtool(["check", "config", join(PROMETHEUS_DIR, "prometheus.compose.yml")]);
    expectSuccess(result, "promtool check config prometheus.compose.yml");
    expect(result.stdout).toContain(`${ruleFiles().length} rule files found`);
  });

  test("upstream promtool accepts the Kubernetes scrape configuration", async () => {
    // Debian's promtool has no Kubernetes service discovery: it rejects any kubernetes_sd_configs.
    if (!UPSTREAM_PROMTOOL)
      throw new Error("no upstream promtool: run scripts/install-ops-tools.sh (or set UPSTREAM_PROMTOOL)");
    const result = await run([
      UPSTREAM_PROMTOOL,
      "check",
      "config",
      "--lint=all",
      join(PROMETHEUS_DIR, "prometheus.yml"),
    ]);
    expectSuccess(result, "promtool check config prometheus.yml");
  });

  test("promtool accepts every rule file", async () => {
    for (const file of ruleFiles())
      expectSuccess(await promtool(["check", "rules", file]), `promtool check rules ${file}`);
  });

  // Two promtools (2.x and 3.x) each evaluate every test group minute by minute: seconds, more on a
  // loaded machine than Bun's default timeout of 5 s for a bare `bun test <file>`.
  test("the rules' unit tests pass", async () => {
    const result = await promtool(["test", "rules", join(PROMETHEUS_DIR, "tests", "orders.rules.test.yml")]);
    expectSuccess(result, "promtool test rules");
  }, 60_000);

  test("every alert has unit tests that see it fire and see it stay silent", () => {
    const tests = parseYaml(join(PROMETHEUS_DIR, "tests", "orders.rules.test.yml")) as {
      rule_files: string[];
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    expect(tests.rule_files.map((f) => join(PROMETHEUS_DIR, "tests", f)).sort()).toEqual(ruleFiles());
    const checks = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    const alerts = ruleFiles().flatMap((file) =>
      (parseYaml(file) as { groups: { rules: { alert?: string }[] }[] }).groups.flatMap((g) =>
        g.rules.flatMap((r) => (r.alert ? [r.alert] : [])),
      ),
    );
    const untested = alerts.flatMap((alert) => {
      const mine = checks.filter((c) => c.alertname === alert);
      return [
        ...(mine.some((c) => c.exp_alerts.length > 0) ? [] : [`${alert}: never seen firing`]),
        ...(mine.some((c) => c.exp_alerts.length === 0) ? [] : [`${alert}: never seen silent`]),
      ];
    });
    expect(untested).toEqual([]);
    // Every alert the tests name exists (a renamed alert leaves no test behind that checks nothing).
    for (const check of checks) expect(alerts, check.alertname).toContain(check.alertname);
  });

  test("every alert has a severity and a summary, every recording rule follows level:metric:operations", () => {
    for (const file of ruleFiles()) {
      const groups = (parseYaml(file) as { groups: { rules: Record<string, unknown>[] }[] }).groups;
      for (const rule of groups.flatMap((g) => g.rules)) {
        if (rule.alert) {
          expect((rule.labels as Record<string, string>)?.severity, String(rule.alert)).toMatch(
            /^(critical|warning|info)$/,
          );
          expect((rule.annotations as Record<string, string>)?.summary, String(rule.alert)).toBeTruthy();
        } else {
          expect(String(rule.record)).toMatch(/^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$/);
        }
      }
    }
  });

  test("every PromQL expression of the dashboard, the rules and the ScaledObject parses", async () => {
    const uses = allPromqlUses();
    expect(uses.length).toBeGreaterThan(30);
    expect(await checkPromql(uses)).toBe("");
    // The check itself must reject a broken expression.
    expect(await checkPromql([{ where: "probe", expr: "sum by (le (rate(x[5m]))" }])).not.toBe("");
  });

  test("no expression is tied to a namespace name: they select on labels the service sets", () => {
    const uses = allPromqlUses();
    const tied = uses.filter((use) => /\bnamespace\s*(=|!=|=~|!~)\s*["'`]/.test(use.expr));
    expect(tied.map((use) => `${use.where}: ${use.expr}`)).toEqual([]);
    // The backlog each kind scales on is selected by process_kind, set on every sample by the service.
    expect(
      scaledObjectQueries()
        .map((use) => use.where.split(" ")[1])
        .sort(),
    ).toEqual(["actors", "executions"]);
    expect(kedaQuery("actors").expr).toContain('process_kind="actors"');
    expect(kedaQuery("executions").expr).toContain('process_kind="executions"');
  });

  test("the ScaledObject query is the backlog while the breaker is closed or half-open, and 0 while open", async () => {
    const keda = kedaQuery("actors");
    const pod = (name: string, kind = "actors", namespace = "orders") =>
      `namespace="${namespace}",pod="${name}",process_kind="${kind}"`;
    const ns = (namespace: string) => `{namespace="${namespace}"}`;
    const testFile = {
      rule_files: [],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: [
            // Two actor pods report the same stream gauges; an API pod registers them too, at 0.
            { series: `placement_stream_lag_entries{${pod("actors-a")}}`, values: "700x10" },
            { series: `placement_stream_lag_entries{${pod("actors-b")}}`, values: "700x10" },
            { series: `placement_stream_lag_entries{${pod("api-a", "api")}}`, values: "0x10" },
            { series: `placement_stream_pending_entries{${pod("actors-a")}}`, values: "300x10" },
            { series: `placement_stream_pending_entries{${pod("actors-b")}}`, values: "250x10" },
            { series: `placement_stream_pending_entries{${pod("api-a", "api")}}`, values: "0x10" },
            // Breaker of pod b: closed, then open from minute 3, half-open at minute 6.
            { series: `exchange_breaker_state{${pod("actors-a")}}`, values: "0x10" },
            { series: `exchange_breaker_state{${pod("actors-b")}}`, values: "0 0 0 2 2 2 1 0 0 0 0" },
            { series: `exchange_breaker_state{${pod("api-a", "api")}}`, values: "0x10" },
            // Another exporter's series of the same name, without the service's process_kind, must not count.
            { series: 'placement_stream_lag_entries{namespace="orders",pod="other"}', values: "99999x10" },
          ],
          promql_expr_test: [
            { expr: keda.expr, eval_time: "1m", exp_samples: [{ labels: ns("orders"), value: 1000 }] },
            { expr: keda.expr, eval_time: "4m", exp_samples: [{ labels: ns("orders"), value: 0 }] },
            { expr: keda.expr, eval_time: "6m", exp_samples: [{ labels: ns("orders"), value: 1000 }] },
            { expr: keda.expr, eval_time: "8m", exp_samples: [{ labels: ns("orders"), value: 1000 }] },
          ],
        },
        {
          // The query names no namespace: the same objects work in any namespace (here `staging`). A
          // Prometheus that scrapes two deployments yields one sample each, which KEDA refuses (an error,
          // then the ScaledObject's fallback), never their mix.
          interval: "1m",
          input_series: [
            ...["orders", "staging"].flatMap((namespace, i) => [
              {
                series: `placement_stream_lag_entries{${pod("actors-a", "actors", namespace)}}`,
                values: `${100 * (i + 1)}x3`,
              },
              {
                series: `placement_stream_pending_entries{${pod("actors-a", "actors", namespace)}}`,
                values: "0x3",
              },
              { series: `exchange_breaker_state{${pod("actors-a", "actors", namespace)}}`, values: "0x3" },
            ]),
          ],
          promql_expr_test: [
            {
              expr: keda.expr,
              eval_time: "1m",
              exp_samples: [
                { labels: ns("orders"), value: 100 },
                { labels: ns("staging"), value: 200 },
              ],
            },
          ],
        },
      ],
    };
    await promtoolExprTest(testFile, keda.where);
  });

  test("the execution actors' ScaledObject query is their lag, counted once however many pods report it", async () => {
    const keda = kedaQuery("executions");
    const pod = (name: string, kind = "executions", namespace = "orders") =>
      `namespace="${namespace}",pod="${name}",process_kind="${kind}"`;
    const ns = (namespace: string) => `{namespace="${namespace}"}`;
    const testFile = {
      rule_files: [],
      evaluation_interval: "1m",
      tests: [
        {
          interval: "1m",
          input_series: [
            // Every execution actor pod reads the consumer group's lag: the same number. Two pods at
            // first, four from minute 3 (scaled out): the signal must not grow with the pod count, or
            // KEDA would scale out the more, the more pods there are.
            ...["a", "b"].map((p) => ({
              series: `executions_stream_lag{${pod(`executions-${p}`)}}`,
              values: "6000 6000 6000 6000 5000 4000 3000",
            })),
            ...["c", "d"].map((p) => ({
              series: `executions_stream_lag{${pod(`executions-${p}`)}}`,
              values: "_ _ _ 6000 5000 4000 3000",
            })),
            // Every process registers the gauge: the API, the placement actors and the gateways export 0.
            { series: `executions_stream_lag{${pod("api-a", "api")}}`, values: "0x7" },
            { series: `executions_stream_lag{${pod("actors-a", "actors")}}`, values: "0x7" },
            { series: `executions_stream_lag{${pod("gateway-a", "gateway")}}`, values: "0x7" },
            // Another exporter's series of the same name, without the service's process_kind.
            { series: 'executions_stream_lag{namespace="orders",pod="other"}', values: "99999x7" },
          ],
          promql_expr_test: [
            { expr: keda.expr, eval_time: "1m", exp_samples: [{ labels: ns("orders"), value: 6000 }] },
            { expr: keda.expr, eval_time: "3m", exp_samples: [{ labels: ns("orders"), value: 6000 }] },
            { expr: keda.expr, eval_time: "5m", exp_samples: [{ labels: ns("orders"), value: 4000 }] },
          ],
        },
        {
          // No execution actor reports (all gone, or their scrape fails): no sample at all, which KEDA
          // (ignoreNullValues "false") takes as an error, then its fallback; never 0, which would scale in.
          interval: "1m",
          input_series: [{ series: `executions_stream_lag{${pod("api-a", "api")}}`, values: "0x3" }],
          promql_expr_test: [{ expr: keda.expr, eval_time: "1m", exp_samples: [] }],
        },
        {
          // The query names no namespace: one sample per namespace, which KEDA refuses when there are
          // several (an error, then the fallback), never their mix.
          interval: "1m",
          input_series: ["orders", "staging"].map((namespace, i) => ({
            series: `executions_stream_lag{${pod("executions-a", "executions", namespace)}}`,
            values: `${100 * (i + 1)}x3`,
          })),
          promql_expr_test: [
            {
              expr: keda.expr,
              eval_time: "1m",
              exp_samples: [
                { labels: ns("orders"), value: 100 },
                { labels: ns("staging"), value: 200 },
              ],
            },
          ],
        },
      ],
    };
    await promtoolExprTest(testFile, keda.where);
  });
});
