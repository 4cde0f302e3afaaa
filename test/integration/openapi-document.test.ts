/**
 * The OpenAPI document as the API serves it (/swagger/json) is valid and complete (GitHub issue #12,
 * item 6): Redocly's `recommended` rules (redocly.yaml) find no error, and a warning only where
 * redocly.yaml sets its rule to `warn` with a reason; OpenAPI 3.1; a Bearer security scheme required
 * globally; servers; every status of the issue documented per route, each response described; and the
 * routes the document exempts from the key really answer without one.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isMap, isScalar, parseDocument } from "yaml";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import { isolatedEnv, ROOT, startInProcess, useServers } from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();

interface ResponseObject {
  description?: string;
  headers?: Record<string, unknown>;
}
interface Operation {
  security?: Record<string, string[]>[];
  responses?: Record<string, ResponseObject>;
}
interface OpenApiDocument {
  openapi: string;
  servers?: { url: string }[];
  security?: Record<string, string[]>[];
  components?: { securitySchemes?: Record<string, { type?: string; scheme?: string }> };
  paths: Record<string, Record<string, Operation>>;
}

interface LintProblem {
  ruleId: string;
  severity: "error" | "warn";
  message: string;
  location?: { pointer?: string }[];
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** The document's operations as `METHOD path` and the operation. */
function operations(document: OpenApiDocument): [string, Operation][] {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, operation]): [string, Operation] => [`${method.toUpperCase()} ${path}`, operation]),
  );
}

/**
 * The rules redocly.yaml sets, each with the comment that justifies it (the lines above the rule or its
 * line's end), and the rules it sets to `warn`.
 */
function configuredRules(): { justified: Record<string, boolean>; warn: string[] } {
  const config = parseDocument(readFileSync(resolve(ROOT, "redocly.yaml"), "utf8"));
  const rules = config.get("rules");
  const justified: Record<string, boolean> = {};
  const warn: string[] = [];
  if (!isMap(rules)) return { justified, warn };
  rules.items.forEach((pair, index) => {
    const name = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const key = pair.key as { commentBefore?: string | null };
    const value = pair.value as { comment?: string | null } | null;
    // The `yaml` parser gives the comment above a map's first entry to the map itself.
    const above = key.commentBefore ?? (index === 0 ? rules.commentBefore : null);
    justified[name] = Boolean(above?.trim() || value?.comment?.trim());
    const severity = isScalar(pair.value)
      ? pair.value.value
      : isMap(pair.value)
        ? pair.value.get("severity")
        : null;
    if (severity === "warn") warn.push(name);
  });
  return { justified, warn };
}

describe("the served OpenAPI document", () => {
  let app: RunningProcess;
  let document: OpenApiDocument;
  let served: string;
  beforeAll(async () => {
    app = await startInProcess(isolatedEnv(servers), "api");
    const response = await app.handle(new Request("http://localhost/swagger/json"));
    expect(response.status).toBe(200);
    served = await response.text();
    document = JSON.parse(served) as OpenApiDocument;
  });
  afterAll(() => app?.close());

  test("Redocly (redocly.yaml, extending recommended) finds no error, and warnings only where redocly.yaml allows them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "orders-openapi-"));
    try {
      const file = join(dir, "openapi.json");
      await Bun.write(file, served);
      // The CLI's script runs on Bun (no Node.js needed); no telemetry, no update check (no network).
      const lint = Bun.spawn(
        [
          process.execPath,
          resolve(ROOT, "node_modules/.bin/redocly"),
          "lint",
          "--config",
          resolve(ROOT, "redocly.yaml"),
          "--format=json",
          "--max-problems=1000",
          file,
        ],
        {
          cwd: ROOT,
          env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const [stdout, stderr, code] = await Promise.all([
        new Response(lint.stdout).text(),
        new Response(lint.stderr).text(),
        lint.exited,
      ]);
      let report: { totals: { errors: number; warnings: number }; problems: LintProblem[] };
      try {
        report = JSON.parse(stdout);
      } catch {
        throw new Error(`redocly lint printed no JSON report (exit ${code}):\n${stdout}\n${stderr}`);
      }
      const problems = report.problems.map((p) => ({
        rule: p.ruleId,
        severity: p.severity,
        message: p.message,
        at: p.location?.[0]?.pointer,
      }));
      expect(problems.filter((p) => p.severity === "error")).toEqual([]);
      expect(code).toBe(0);

      const { justified, warn } = configuredRules();
      // Every rule redocly.yaml changes says why.
      expect(Object.entries(justified).filter(([, ok]) => !ok)).toEqual([]);
      // A warning is allowed only for a rule that redocly.yaml sets to `warn` (with its reason).
      expect(problems.filter((p) => !warn.includes(p.rule))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("OpenAPI 3.1, servers, and a Bearer security scheme required globally", () => {
    expect(document.openapi).toMatch(/^3\.1\.\d+$/);
    expect(document.servers?.length).toBeGreaterThan(0);
    // Relative to where the document is served; never ending in "/" (paths are appended to it).
    for (const server of document.servers ?? []) expect(server.url).not.toEndWith("/");

    const bearerSchemes = Object.entries(document.components?.securitySchemes ?? {})
      .filter(([, scheme]) => scheme.type === "http" && scheme.scheme?.toLowerCase() === "bearer")
      .map(([name]) => name);
    expect(bearerSchemes.length).toBeGreaterThan(0);
    const global = (document.security ?? []).flatMap((requirement) => Object.keys(requirement));
    expect(global.some((name) => bearerSchemes.includes(name))).toBe(true);
    // Every /orders operation keeps the global requirement (no `security: []` of its own).
    for (const [name, operation] of operations(document).filter(([name]) => name.includes(" /orders"))) {
      expect({ name, security: operation.security }).toEqual({ name, security: undefined });
    }
  });

  test("every status of the issue is documented per route, and every response has a description", () => {
    const expected: [string, string, string[]][] = [
      ["post", "/orders", ["201", "401", "409", "413", "415", "422", "429", "500", "503"]],
      ["get", "/orders", ["200", "401", "422", "429", "500"]],
      ["get", "/orders/{id}", ["200", "401", "404", "429", "500"]],
    ];
    const missing = expected.map(([method, path, statuses]) => {
      const documented = Object.keys(document.paths[path]?.[method]?.responses ?? {});
      return [`${method.toUpperCase()} ${path}`, statuses.filter((status) => !documented.includes(status))];
    });
    expect(missing).toEqual(expected.map(([method, path]) => [`${method.toUpperCase()} ${path}`, []]));

    const undescribed = operations(document).flatMap(([name, operation]) =>
      Object.entries(operation.responses ?? {})
        .filter(([, response]) => !(typeof response.description === "string" && response.description.trim()))
        .map(([status]) => `${name} ${status}`),
    );
    expect(undescribed).toEqual([]);
  });

  test("every operation that needs a key documents 401 with its challenge and 429 with Retry-After", () => {
    const keyed = operations(document).filter(
      ([, operation]) => operation.security === undefined || operation.security.length > 0,
    );
    expect(keyed.map(([name]) => name).sort()).toEqual([
      "GET /orders",
      "GET /orders/events",
      "GET /orders/{id}",
      "POST /orders",
    ]);
    for (const [name, operation] of keyed) {
      const headers = (status: string) => Object.keys(operation.responses?.[status]?.headers ?? {});
      expect({ name, 401: headers("401") }).toEqual({
        name,
        401: expect.arrayContaining(["WWW-Authenticate"]),
      });
      expect({ name, 429: headers("429") }).toEqual({ name, 429: expect.arrayContaining(["Retry-After"]) });
    }
  });

  test("every operation of the public document needs a key; the operations routes are not in it (OPS_PORT)", async () => {
    expect(operations(document).filter(([, operation]) => operation.security?.length === 0)).toEqual([]);
    expect(Object.keys(document.paths).sort()).toEqual(["/orders", "/orders/events", "/orders/{id}"]);
    // Not on the public port at all: on the operations port, without a key.
    for (const path of ["/health/live", "/health/ready", "/metrics"]) {
      expect({ path, public: (await app.handle(new Request(`http://localhost${path}`))).status }).toEqual({
        path,
        public: 404,
      });
      expect({ path, ops: (await app.handleOps(new Request(`http://localhost${path}`))).status }).toEqual({
        path,
        ops: 200,
      });
    }
  });
});
