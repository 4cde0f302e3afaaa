/**
 * Shared helpers of the offline validation of the operations artifacts (k8s/, docker-compose.yml,
 * Dockerfile, Prometheus and Grafana files): reading them, strict JSON Schemas generated from the
 * packages' TypeScript types, promtool, PromQL metric and label extraction, and the real processes
 * some tests start. Every process and temporary directory is owned by the caller and cleaned up even
 * when a test fails.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, relative } from "node:path";
import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { createGenerator } from "ts-json-schema-generator";
import { parseAllDocuments } from "yaml";
import { type OwnedProcess, spawnOwned } from "./servers/child-process.ts";
import { freePort, waitFor } from "./wait-for.ts";

export const ROOT = join(import.meta.dir, "..", "..");
export const K8S = join(ROOT, "k8s");

export function repoPath(...parts: string[]): string {
  return join(ROOT, ...parts);
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}

/** Every file under `dir` (recursively) whose name ends with one of `extensions`. */
export function listFiles(dir: string, extensions: string[]): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path, extensions));
    else if (extensions.some((ext) => entry.name.endsWith(ext))) out.push(path);
  }
  return out.sort();
}

export function rel(path: string): string {
  return relative(ROOT, path);
}

/** Parses every document of a YAML file; a syntax error or warning anywhere fails. */
export function parseYamlDocuments(path: string): unknown[] {
  const docs = parseAllDocuments(readText(path), { prettyErrors: true, strict: true, uniqueKeys: true });
  const problems = docs.flatMap((doc) => [...doc.errors, ...doc.warnings].map((e) => e.message));
  if (problems.length > 0) throw new Error(`${rel(path)}: ${problems.join("\n")}`);
  return docs
    .map((doc) => doc.toJS({ maxAliasCount: 100 }))
    .filter((doc) => doc !== null && doc !== undefined);
}

export function parseYaml(path: string): unknown {
  const docs = parseYamlDocuments(path);
  if (docs.length !== 1) throw new Error(`${rel(path)}: expected one YAML document, found ${docs.length}`);
  return docs[0];
}

export type Json = Record<string, unknown>;

export function asObject(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`${what} is not an object`);
  return value as Json;
}

// ---------------------------------------------------------------------------------------------------
// Strict JSON Schemas from TypeScript types

/**
 * Generates a JSON Schema for `type` from the declaration files `files` (paths relative to the repo,
 * brace globs allowed). Interfaces get `additionalProperties: false`, so an unknown or misspelt
 * field is an error, which the packages' own validators do not report.
 */
export function schemaFromTypes(files: string, types: string[]): Map<string, Json> {
  const generator = createGenerator({
    path: join(ROOT, files),
    type: "*",
    skipTypeCheck: true,
    additionalProperties: false,
    expose: "export",
    topRef: true,
    jsDoc: "none",
    sortProps: false,
  });
  return new Map(types.map((type) => [type, generator.createSchema(type) as Json]));
}

export function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
  addFormats(ajv);
  return ajv;
}

export function formatAjvErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => {
      const extra =
        e.keyword === "additionalProperties"
          ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
          : "";
      return `${e.instancePath || "/"} ${e.message}${extra}`;
    })
    .join("\n");
}

/** Runs `validate` and returns its errors as text ("" when valid). */
export function schemaErrors(validate: ValidateFunction, data: unknown): string {
  return validate(data) ? "" : formatAjvErrors(validate.errors);
}

// ---------------------------------------------------------------------------------------------------
// Container image references

/**
 * Images that publish no version tag at all, with the reason; each may use the named tag (or a digest).
 * distroless has only latest/nonroot/debug/debug-nonroot (and commit-sha variants); pin it by digest
 * at release time.
 */
export const UNVERSIONED_IMAGE_TAGS: Record<string, { tag: string; reason: string }> = {
  "gcr.io/distroless/cc-debian12": {
    tag: "nonroot",
    reason: "distroless publishes no version tags",
  },
};

/**
 * Why an image reference is not pinned, or null when it is: a digest (`@sha256:` + 64 hex digits), or a
 * tag with a full version (`1.4.5`, `v3.16.0`, `7.0.28-jammy`) or a date stamp (`bookworm-20250113-slim`),
 * never `latest`; UNVERSIONED_IMAGE_TAGS names the only exceptions.
 */
export function imagePinProblem(reference: string): string | null {
  if (/@sha256:[0-9a-f]{64}$/.test(reference)) return null;
  const match = /^((?:[^/:]+(?::\d+)?\/)?[^:@]+)(?::([\w][\w.-]{0,127}))?$/.exec(reference);
  if (!match) return `${reference}: not an image reference`;
  const [, name, tag] = match;
  if (tag === undefined) return `${reference}: no tag (means latest)`;
  if (tag === "latest") return `${reference}: latest`;
  const exception = UNVERSIONED_IMAGE_TAGS[name!];
  if (exception && tag === exception.tag) return null;
  if (/^v?\d+\.\d+\.\d+(?:[-+][\w.-]+)?$/.test(tag) || /(?:^|-)\d{8}(?:-|$)/.test(tag)) return null;
  return `${reference}: tag ${tag} names no exact version (moves with new releases)`;
}

// ---------------------------------------------------------------------------------------------------
// Processes and temporary directories

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `orders-ops-${prefix}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`) and returns its exit code and output. */
export async function run(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const timer = setTimeout(() => proc.kill(9), options.timeoutMs ?? 60_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export const PROMETHEUS = Bun.which("prometheus");

/** Debian's promtool (scripts/install-ops-tools.sh installs it with the prometheus package). */
export const DEBIAN_PROMTOOL = Bun.which("promtool");

/**
 * Upstream promtool, built by scripts/install-ops-tools.sh: Debian's is built without Kubernetes
 * service discovery and rejects `kubernetes_sd_configs`; upstream is also the version compose runs.
 */
export const UPSTREAM_PROMTOOL = [
  process.env.UPSTREAM_PROMTOOL,
  join(homedir(), ".cache/orders-service/bin/promtool-upstream"),
].find((path): path is string => typeof path === "string" && path !== "" && existsSync(path));

/** Every promtool at hand; checks that both accept run with both (the 2.x and the 3.x parser). */
export function promtools(): { name: string; path: string }[] {
  const tools = [
    ...(UPSTREAM_PROMTOOL ? [{ name: "upstream promtool", path: UPSTREAM_PROMTOOL }] : []),
    ...(DEBIAN_PROMTOOL ? [{ name: "debian promtool", path: DEBIAN_PROMTOOL }] : []),
  ];
  if (tools.length === 0) throw new Error("no promtool: run scripts/install-ops-tools.sh");
  return tools;
}

/** Runs `args` with every promtool; the result of the first that fails, else of the last. */
export async function promtool(args: string[], cwd = ROOT): Promise<RunResult & { tool: string }> {
  let last: (RunResult & { tool: string }) | undefined;
  for (const tool of promtools()) {
    last = { ...(await run([tool.path, ...args], { cwd })), tool: tool.name };
    if (last.code !== 0) return last;
  }
  return last!;
}

export function expectSuccess(result: RunResult & { tool?: string }, what: string): void {
  if (result.code !== 0) {
    throw new Error(
      `${what} failed with ${result.tool ?? "the command"} (exit ${result.code}):\n${result.stdout}\n${result.stderr}`,
    );
  }
}

/** A process of the service started from source, e.g. `bun src/main.ts exchange`, on free ports. */
export interface ServiceProcess {
  /** The operations port (OPS_PORT): /health/live, /health/ready, /metrics. */
  readonly opsPort: number;
  readonly opsUrl: string;
  readonly process: OwnedProcess;
  stop(): Promise<void>;
}

/**
 * Starts `cmd` with PORT and OPS_PORT set to free loopback ports and waits until GET /health/live on
 * the operations port answers 200.
 */
export async function startService(
  name: string,
  cmd: string[],
  env: Record<string, string> = {},
): Promise<ServiceProcess> {
  const [port, opsPort] = [await freePort(), await freePort()];
  const owned = spawnOwned(name, cmd, {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", ...env, PORT: String(port), OPS_PORT: String(opsPort) },
  });
  const opsUrl = `http://127.0.0.1:${opsPort}`;
  const stop = async () => {
    owned.signal("SIGTERM");
    const exited = await Promise.race([owned.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
    if (!exited) await owned.kill();
  };
  try {
    await waitFor(async () => (await fetch(`${opsUrl}/health/live`)).status === 200, {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: `${name} answering /health/live on ${opsPort}`,
    });
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${owned.logs.slice(-3000)}`);
  }
  return { opsPort, opsUrl, process: owned, stop };
}

/** The simulated venue started from source: the one subcommand that needs no MongoDB or Redis. */
export function startExchangeFromSource(): Promise<ServiceProcess> {
  return startService("orders exchange", ["bun", "src/main.ts", "exchange"]);
}

// ---------------------------------------------------------------------------------------------------
// PromQL

/** Grafana's built-in interval variables, replaced by a value PromQL accepts before parsing. */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$\{?__rate_interval\}?/g, "5m")
    .replace(/\$\{?__interval\}?/g, "1m")
    .replace(/\$\{?__range\}?/g, "1h");
}

const PROMQL_KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "atan2",
  "inf",
  "nan",
  "start",
  "end",
]);

function stripStrings(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
}

/**
 * The metric names an expression selects. A lexical scan, sound for the expressions promtool has
 * accepted: strings, label matchers, ranges and grouping clauses are removed first; an identifier
 * followed by `(` is a function or aggregation.
 */
export function metricNamesIn(expr: string): Set<string> {
  const names = new Set<string>();
  let text = stripStrings(expr);
  for (const m of text.matchAll(/__name__\s*=\s*"([^"]*)"/g)) if (m[1]) names.add(m[1]);
  text = text
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  for (const m of text.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)/g)) {
    const name = m[1]!;
    const after = text.slice((m.index ?? 0) + name.length).trimStart();
    if (after.startsWith("(")) continue;
    if (PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return names;
}

/** Label names an expression uses in matchers and in by/without/on/ignoring/group_* clauses. */
export function labelNamesIn(expr: string): Set<string> {
  const labels = new Set<string>();
  const text = stripStrings(expr);
  for (const block of text.matchAll(/\{([^}]*)\}/g)) {
    for (const m of block[1]!.matchAll(/([a-zA-Z_][\w]*)\s*(=~|!~|!=|=)/g)) labels.add(m[1]!);
  }
  for (const clause of text.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const name of clause[1]!.split(",")) if (name.trim()) labels.add(name.trim());
  }
  labels.delete("__name__");
  return labels;
}

/** Parses expressions with promtool (via a throw-away rules file); returns promtool's complaints. */
export async function checkPromql(exprs: { where: string; expr: string }[]): Promise<string> {
  const dir = tempDir("promql");
  try {
    const rules = exprs.map((e, i) => ({
      record: `check:expr_${i}`,
      expr: substituteGrafanaVariables(e.expr),
    }));
    const file = join(dir, "exprs.rules.yml");
    await Bun.write(file, JSON.stringify({ groups: [{ name: "exprs", rules }] }));
    const result = await promtool(["check", "rules", file]);
    if (result.code === 0) return "";
    // Name the failing expressions: promtool reports them by rule index.
    const failing = exprs.filter(
      (_, i) => result.stdout.includes(`expr_${i}"`) || result.stderr.includes(`expr_${i}"`),
    );
    return `${result.tool}: ${result.stdout}${result.stderr}\n${failing.map((e) => `${e.where}: ${e.expr}`).join("\n")}`;
  } finally {
    removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------------
// The PromQL expressions of the artifacts

export interface PromqlUse {
  where: string;
  expr: string;
}

/**
 * The Kubernetes objects as written: every `.yaml` of the kustomize base and overlays (k8s/base,
 * k8s/overlays/NAME) but the kustomization.yaml files (tool configs are `.yml`). What an overlay
 * renders is checked by test/ops/k8s-manifests.test.ts.
 */
export function manifestDocuments(): { file: string; doc: Json }[] {
  return [join(K8S, "base"), join(K8S, "overlays")]
    .flatMap((dir) => listFiles(dir, [".yaml"]))
    .filter((file) => !file.endsWith("kustomization.yaml"))
    .flatMap((file) => parseYamlDocuments(file).map((doc) => ({ file, doc: asObject(doc, rel(file)) })));
}

export function scaledObjectQueries(): PromqlUse[] {
  const out: PromqlUse[] = [];
  for (const { file, doc } of manifestDocuments()) {
    if (doc.kind !== "ScaledObject") continue;
    const triggers = ((doc.spec as Json | undefined)?.triggers ?? []) as Json[];
    triggers.forEach((trigger, i) => {
      const query = (trigger.metadata as Json | undefined)?.query;
      if (trigger.type === "prometheus" && typeof query === "string") {
        out.push({ where: `${rel(file)} ${(doc.metadata as Json).name} trigger ${i}`, expr: query });
      }
    });
  }
  return out;
}

export interface RuleFile {
  groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[];
}

export function ruleFiles(): string[] {
  return listFiles(join(K8S, "prometheus", "rules"), [".yml", ".yaml"]);
}

export function ruleExpressions(): PromqlUse[] {
  return ruleFiles().flatMap((file) =>
    (parseYaml(file) as RuleFile).groups.flatMap((group) =>
      group.rules.map((rule) => ({ where: `${rel(file)} ${rule.record ?? rule.alert}`, expr: rule.expr })),
    ),
  );
}

export function recordedNames(): Set<string> {
  return new Set(
    ruleFiles().flatMap((file) =>
      (parseYaml(file) as RuleFile).groups.flatMap((g) =>
        g.rules.flatMap((r) => (r.record ? [r.record] : [])),
      ),
    ),
  );
}

export function dashboardFiles(): string[] {
  return listFiles(join(K8S, "grafana", "dashboards"), [".json"]);
}

interface PanelLike {
  id?: number;
  title?: string;
  type?: string;
  panels?: PanelLike[];
  targets?: Json[];
}

export function dashboardPanels(dashboard: Json): PanelLike[] {
  const out: PanelLike[] = [];
  const visit = (panels: PanelLike[] | undefined) => {
    for (const panel of panels ?? []) {
      out.push(panel);
      visit(panel.panels);
    }
  };
  visit(dashboard.panels as PanelLike[] | undefined);
  return out;
}

export function dashboardExpressions(): PromqlUse[] {
  return dashboardFiles().flatMap((file) => {
    const dashboard = JSON.parse(readText(file)) as Json;
    return dashboardPanels(dashboard).flatMap((panel) =>
      (panel.targets ?? []).flatMap((target) =>
        typeof target.expr === "string"
          ? [{ where: `${rel(file)} panel ${panel.id} "${panel.title}" ${target.refId}`, expr: target.expr }]
          : [],
      ),
    );
  });
}

export function allPromqlUses(): PromqlUse[] {
  return [...scaledObjectQueries(), ...ruleExpressions(), ...dashboardExpressions()];
}

/** Series Prometheus itself makes up for every target; no process exports them. */
export const SYNTHETIC_SERIES = new Set([
  "up",
  "scrape_duration_seconds",
  "scrape_samples_scraped",
  "scrape_series_added",
]);

/** Labels Prometheus attaches to scraped series (scrape configs) besides what processes export. */
export const TARGET_LABELS = new Set(["job", "instance", "namespace", "pod", "component", "process_kind"]);

/** Metric family names (`# TYPE name kind`) of a Prometheus text exposition, with their kinds. */
export function metricFamilies(exposition: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1]!, m[2]!);
  return families;
}

/** The series names a family provides: histograms and summaries add _bucket/_sum/_count. */
export function seriesNames(families: Map<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, kind] of families) {
    names.add(name);
    if (kind === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
    if (kind === "summary") for (const suffix of ["_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}
