/**
 * A real Prometheus (Debian's package) on a free loopback port, with a temporary data directory and
 * the repository's rules, scrapes a real process of the service (`bun src/main.ts exchange`) and
 * answers, over its HTTP API, the queries the dashboard and the ScaledObject use.
 *
 * The exchange process registers every metric family, like every process kind. More scrape jobs of
 * the same process relabel process_kind to "actors", "executions" and "gateway", standing in for a pod
 * of each kind, so that the ScaledObjects' and the rules' process_kind selectors find series without
 * MongoDB and Redis.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  dashboardExpressions,
  PROMETHEUS,
  removeDir,
  ruleExpressions,
  ruleFiles,
  type ServiceProcess,
  scaledObjectQueries,
  startExchangeFromSource,
  substituteGrafanaVariables,
  tempDir,
} from "../support/ops.ts";
import { spawnOwned } from "../support/servers/child-process.ts";
import { freePort, waitFor } from "../support/wait-for.ts";

interface QueryResponse {
  status: string;
  error?: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

/** The process kinds the exchange process stands in for (its process_kind relabelled). */
const STAND_INS = ["actors", "executions", "gateway"];

if (!PROMETHEUS) {
  console.warn(
    "prometheus-scrape: SKIPPED, no `prometheus` binary on PATH (run scripts/install-ops-tools.sh)",
  );
}

describe.skipIf(!PROMETHEUS)("a real Prometheus scraping a real process", () => {
  let exchange: ServiceProcess | undefined;
  let prometheus: ReturnType<typeof spawnOwned> | undefined;
  let dir: string | undefined;
  let api = "";

  async function query(expr: string): Promise<QueryResponse> {
    const response = await fetch(`${api}/api/v1/query`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ query: expr }),
    });
    return (await response.json()) as QueryResponse;
  }

  beforeAll(async () => {
    try {
      exchange = await startExchangeFromSource();
      dir = tempDir("prometheus");
      const port = await freePort();
      api = `http://127.0.0.1:${port}`;
      const target = `127.0.0.1:${exchange.opsPort}`;
      const standIn = (kind: string) => ({
        job_name: `orders-${kind}-stand-in`,
        static_configs: [{ targets: [target], labels: { namespace: "orders", component: kind } }],
        metric_relabel_configs: [
          {
            source_labels: ["process_kind"],
            regex: "exchange",
            target_label: "process_kind",
            replacement: kind,
          },
        ],
      });
      const config = {
        global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
        rule_files: ruleFiles(),
        scrape_configs: [
          {
            job_name: "orders",
            static_configs: [{ targets: [target], labels: { namespace: "orders", component: "exchange" } }],
          },
          ...STAND_INS.map(standIn),
        ],
      };
      await Bun.write(join(dir, "prometheus.yml"), JSON.stringify(config));
      prometheus = spawnOwned(
        "prometheus",
        [
          PROMETHEUS!,
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        { cleanupDir: dir },
      );
      await waitFor(async () => (await fetch(`${api}/-/ready`)).status === 200, {
        timeoutMs: 30_000,
        intervalMs: 100,
        message: "prometheus ready",
      });
      // Two scrapes of each job and one rule evaluation after them.
      await waitFor(
        async () => {
          const result = await query('count_over_time(up{job=~"orders.*"}[1m]) >= 2');
          return result.data.result.length === 1 + STAND_INS.length;
        },
        { timeoutMs: 30_000, intervalMs: 250, message: "two scrapes of every job" },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${prometheus?.logs.slice(-3000) ?? ""}`);
    }
  }, 60_000);

  afterAll(async () => {
    prometheus?.signal("SIGTERM");
    if (prometheus) await Promise.race([prometheus.exited, Bun.sleep(5_000).then(() => prometheus?.kill())]);
    await exchange?.stop();
    removeDir(dir);
  }, 60_000);

  test("every scrape target is up", async () => {
    const targets = (await (await fetch(`${api}/api/v1/targets`)).json()) as {
      data: { activeTargets: { health: string; lastError: string; scrapePool: string }[] };
    };
    expect(targets.data.activeTargets.map((t) => [t.scrapePool, t.health, t.lastError]).sort()).toEqual(
      [["orders", "up", ""], ...STAND_INS.map((kind) => [`orders-${kind}-stand-in`, "up", ""])].sort(),
    );
  });

  test("the dashboard's memory panel query returns the process's RSS", async () => {
    const expr = dashboardExpressions().find((use) =>
      use.expr.includes("process_resident_memory_bytes"),
    )!.expr;
    const result = await query(substituteGrafanaVariables(expr));
    expect(result.status).toBe("success");
    const exchangeSeries = result.data.result.find((r) => r.metric.process_kind === "exchange");
    expect(exchangeSeries, JSON.stringify(result.data.result)).toBeDefined();
    expect(Number(exchangeSeries!.value[1])).toBeGreaterThan(1_000_000);
  });

  test("each ScaledObject's query returns one sample: no backlog (and the breaker closed)", async () => {
    const kedas = scaledObjectQueries();
    expect(kedas.length).toBe(2);
    for (const keda of kedas) {
      const result = await query(keda.expr);
      expect(result.status, keda.where).toBe("success");
      // One sample per namespace (k8s/base/actors.yaml, executions.yaml): this one's.
      expect(
        result.data.result.map((r) => [r.metric, r.value[1]]),
        keda.where,
      ).toEqual([[{ namespace: "orders" }, "0"]]);
    }
  });

  test("every dashboard and rule expression evaluates without error", async () => {
    const problems: string[] = [];
    for (const use of [...dashboardExpressions(), ...ruleExpressions()]) {
      const result = await query(substituteGrafanaVariables(use.expr));
      if (result.status !== "success") problems.push(`${use.where}: ${result.error}`);
    }
    expect(problems).toEqual([]);
  });

  test("the rules are loaded, evaluated, and healthy", async () => {
    type Rules = {
      data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] };
    };
    const rules = await waitFor(
      async () => {
        const body = (await (await fetch(`${api}/api/v1/rules`)).json()) as Rules;
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => r.health !== "unknown") ? all : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250, message: "every rule evaluated" },
    );
    expect(rules.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    expect(rules.length).toBe(ruleExpressions().length);
    // The backlog recording rules see the stand-ins' gauges; the gateway stand-in holds no lease.
    for (const record of [
      "namespace:placement_backlog:entries",
      "namespace:executions_backlog:entries",
      "namespace:executions_gateway_active:sum",
    ]) {
      const result = await query(record);
      expect(
        result.data.result.map((r) => [r.metric, r.value[1]]),
        record,
      ).toEqual([[{ __name__: record, namespace: "orders" }, "0"]]);
    }
  });
});
