/**
 * k8s/: a kustomize base (k8s/base) and two overlays (k8s/overlays/dev with the simulated venue,
 * k8s/overlays/prod without). Every manifest as written and every object each overlay renders (with
 * kustomize: `kustomize build`, or `kubectl kustomize`) parses, passes the kubernetes-models
 * validators (types, enums, required fields) and a strict JSON Schema generated from the same
 * packages' TypeScript types (unknown fields rejected, which the packages' validators let through).
 * Then, per overlay, the objects fit together: selectors, ports, scale targets, disruption budgets,
 * probes (the startup probe against the start-up retry budget of the code), grace periods,
 * NetworkPolicies, the KEDA triggers (placement actors, execution actors), the execution gateway's hot
 * standby and the configuration itself.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { parseAllDocuments } from "yaml";
import { exchangeFeedUrl, loadConfig } from "../../src/config.ts";
import { STARTUP_RETRY } from "../../src/process/lifecycle.ts";
import { backoffDelay } from "../../src/support/backoff.ts";
import {
  asObject,
  createAjv,
  type Json,
  K8S,
  listFiles,
  manifestDocuments,
  parseYaml,
  parseYamlDocuments,
  readText,
  rel,
  schemaErrors,
  schemaFromTypes,
} from "../support/ops.ts";

interface ModelClass {
  new (data?: never): { validate(): void };
}

/** apiVersion/kind -> the kubernetes-models class, and the declaration file and interface of its type. */
const KINDS: Record<string, { model: ModelClass; dts: string; type: string }> = {
  "v1/Namespace": {
    model: Namespace as unknown as ModelClass,
    dts: "kubernetes-models/v1/Namespace",
    type: "INamespace",
  },
  "v1/ConfigMap": {
    model: ConfigMap as unknown as ModelClass,
    dts: "kubernetes-models/v1/ConfigMap",
    type: "IConfigMap",
  },
  "v1/Secret": {
    model: Secret as unknown as ModelClass,
    dts: "kubernetes-models/v1/Secret",
    type: "ISecret",
  },
  "v1/Service": {
    model: Service as unknown as ModelClass,
    dts: "kubernetes-models/v1/Service",
    type: "IService",
  },
  "apps/v1/Deployment": {
    model: Deployment as unknown as ModelClass,
    dts: "kubernetes-models/apps/v1/Deployment",
    type: "IDeployment",
  },
  "batch/v1/CronJob": {
    model: CronJob as unknown as ModelClass,
    dts: "kubernetes-models/batch/v1/CronJob",
    type: "ICronJob",
  },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget as unknown as ModelClass,
    dts: "kubernetes-models/policy/v1/PodDisruptionBudget",
    type: "IPodDisruptionBudget",
  },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: HorizontalPodAutoscaler as unknown as ModelClass,
    dts: "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
    type: "IHorizontalPodAutoscaler",
  },
  "networking.k8s.io/v1/NetworkPolicy": {
    model: NetworkPolicy as unknown as ModelClass,
    dts: "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
    type: "INetworkPolicy",
  },
  "keda.sh/v1alpha1/ScaledObject": {
    model: ScaledObject as unknown as ModelClass,
    dts: "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
    type: "IScaledObject",
  },
};

const NAMESPACE = "orders";
const SUBCOMMANDS = new Set(["api", "actors", "all", "exchange", "gateway", "executions"]);
/**
 * Subcommands that connect to MongoDB or Redis at start-up, with retries (src/process/lifecycle.ts,
 * withStartupRetry): the gateway needs Redis only, the others both.
 */
const CONNECTING_SUBCOMMANDS = new Set(["api", "actors", "all", "gateway", "executions"]);
/** Subcommands that take no traffic: no public port (PORT), only the operations port. */
const NO_PUBLIC_PORT = new Set(["actors", "gateway", "executions"]);
/**
 * The ScaledObjects, by the Deployment they scale: the metrics their query must read and the
 * process_kind it must select them by (every process registers every metric; an API pod exports the
 * stream gauges at 0).
 */
const SCALED_BY_KEDA: Record<string, { metrics: string[]; processKind: string }> = {
  actors: {
    metrics: ["placement_stream_lag_entries", "placement_stream_pending_entries", "exchange_breaker_state"],
    processKind: "actors",
  },
  executions: { metrics: ["executions_stream_lag"], processKind: "executions" },
};
/** The namespace whose Prometheus scrapes the pods (and that KEDA's serverAddress names). */
const MONITORING_NAMESPACE = "monitoring";
const BASE = join(K8S, "base");
const OVERLAYS = ["dev", "prod"] as const;
type Overlay = (typeof OVERLAYS)[number];

const sources = manifestDocuments();
const keyOf = (doc: Json) => `${doc.apiVersion}/${doc.kind}`;
const nameOf = (doc: Json) => String(asObject(doc.metadata, "metadata").name);

const ajv = createAjv();
const schemas = schemaFromTypes(
  `node_modules/{${Object.values(KINDS)
    .map((k) => k.dts)
    .join(",")}}.d.ts`,
  Object.values(KINDS).map((k) => k.type),
);
const strictValidators = new Map(
  Object.entries(KINDS).map(([key, kind]) => [key, ajv.compile(schemas.get(kind.type)!)]),
);

function modelErrors(doc: Json): string {
  const kind = KINDS[keyOf(doc)];
  if (!kind) return `no model for ${keyOf(doc)}`;
  try {
    new kind.model(structuredClone(doc) as never).validate();
    return "";
  } catch (error) {
    return (error as Error).message;
  }
}

function strictErrors(doc: Json): string {
  const validate = strictValidators.get(keyOf(doc));
  if (!validate) return `no schema for ${keyOf(doc)}`;
  return schemaErrors(validate, doc);
}

// ---- kustomize

/**
 * The command that renders a kustomization: KUSTOMIZE (a kustomize binary), the one
 * scripts/install-ops-tools.sh builds, or kubectl's built-in `kubectl kustomize`.
 */
const KUSTOMIZE: string[] | undefined = (() => {
  for (const path of [process.env.KUSTOMIZE, join(homedir(), ".cache/orders-service/bin/kustomize")]) {
    if (path && existsSync(path)) return [path, "build"];
  }
  const kubectl = Bun.which("kubectl");
  return kubectl ? [kubectl, "kustomize"] : undefined;
})();

const renderedCache = new Map<string, Json[]>();

/** The objects `kustomize build DIR` renders (cached). */
function render(dir: string): Json[] {
  const cached = renderedCache.get(dir);
  if (cached) return cached;
  if (!KUSTOMIZE)
    throw new Error("no kustomize: install kubectl, or run scripts/install-ops-tools.sh (or set KUSTOMIZE)");
  const result = Bun.spawnSync([...KUSTOMIZE, dir], { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  if (result.exitCode !== 0)
    throw new Error(`${KUSTOMIZE.join(" ")} ${rel(dir)} failed:\n${result.stderr.toString()}`);
  const docs = parseAllDocuments(result.stdout.toString(), { strict: true, uniqueKeys: true });
  const problems = docs.flatMap((doc) => doc.errors.map((e) => e.message));
  if (problems.length > 0) throw new Error(`${rel(dir)} rendered unparsable YAML: ${problems.join("\n")}`);
  const objects = docs
    .map((doc) => doc.toJS() as unknown)
    .filter((doc) => doc !== null && doc !== undefined)
    .map((doc) => asObject(doc, `${rel(dir)} output`));
  renderedCache.set(dir, objects);
  return objects;
}

const overlayDir = (overlay: Overlay) => join(K8S, "overlays", overlay);

interface Kustomization {
  namespace?: string;
  resources?: string[];
  components?: string[];
  patches?: { path?: string; patch?: string }[];
  configMapGenerator?: { name: string; files?: string[] }[];
}

/** Every kustomization.yaml under k8s/. */
const kustomizationFiles = () => listFiles(K8S, [".yaml"]).filter((f) => f.endsWith("/kustomization.yaml"));

// ---- helpers over parsed objects

type Labels = Record<string, string>;

interface Container {
  name: string;
  args?: string[];
  image?: string;
  ports?: { name?: string; containerPort: number }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
  }[];
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command?: string[] }; sleep?: { seconds: number } } };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
  exec?: { command?: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  failureThreshold?: number;
}
interface PodTemplate {
  metadata: { labels: Labels; annotations?: Record<string, string> };
  spec: { containers: Container[]; terminationGracePeriodSeconds?: number };
}
const template = (deployment: Json) => (deployment.spec as { template: PodTemplate }).template;
/** The pod template of a CronJob's Jobs. */
const jobPodTemplate = (cronJob: Json) =>
  (cronJob.spec as { jobTemplate: { spec: { template: PodTemplate } } }).jobTemplate.spec.template;
const containers = (deployment: Json) => template(deployment).spec.containers;

function matches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function resolvePort(container: Container, port: number | string): number | undefined {
  const ports = container.ports ?? [];
  return typeof port === "number"
    ? ports.find((p) => p.containerPort === port)?.containerPort
    : ports.find((p) => p.name === port)?.containerPort;
}

/** Kubernetes resource quantity in base units (cores, bytes). */
function quantity(value: string | number): number {
  if (typeof value === "number") return value;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(value);
  if (!m) throw new Error(`unparsable quantity ${value}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(m[1]) * (m[2] ? factor[m[2]]! : 1);
}

const secretExample = parseYaml(join(BASE, "secret.example.yaml")) as Json;

/** One overlay's rendered objects with lookups over them. */
function objectsOf(docs: Json[]) {
  const ofKind = (kind: string) => docs.filter((doc) => doc.kind === kind);
  const deploymentsSelectedBy = (selector: Labels) =>
    ofKind("Deployment").filter((d) => matches(selector, template(d).metadata.labels));
  const configMapData = (): Record<string, string> => {
    const cm = ofKind("ConfigMap").find((c) => nameOf(c) === "orders-config");
    if (!cm) throw new Error("no ConfigMap orders-config");
    return cm.data as Record<string, string>;
  };
  const minReplicas = (deployment: Json): number => {
    const name = nameOf(deployment);
    const hpa = ofKind("HorizontalPodAutoscaler").find(
      (h) => (h.spec as Json & { scaleTargetRef: Json }).scaleTargetRef.name === name,
    );
    if (hpa) return Number((hpa.spec as Json).minReplicas ?? 1);
    const so = ofKind("ScaledObject").find(
      (s) => (s.spec as Json & { scaleTargetRef: Json }).scaleTargetRef.name === name,
    );
    if (so) return Number((so.spec as Json).minReplicaCount ?? 0);
    return Number((deployment.spec as Json).replicas ?? 1);
  };
  return { docs, ofKind, deploymentsSelectedBy, configMapData, minReplicas };
}

// ---- the start-up retry budget of src/process/lifecycle.ts

/**
 * The longest a connecting process may take to start listening while MongoDB or Redis is down, in ms:
 * connectShared waits up to MONGO_TIMEOUT_MS for Redis, then a retried step fails every attempt after
 * MONGO_TIMEOUT_MS (the driver's server selection timeout) and waits the largest jittered backoff
 * (backoffDelay with random() = 1) before the next. The HTTP server listens only after start-up, so
 * the startup probe (on /health/live) fails all that time.
 */
function worstCaseStartupMs(mongoTimeoutMs: number): number {
  let ms = mongoTimeoutMs;
  for (let attempt = 1; attempt <= STARTUP_RETRY.attempts; attempt++) {
    ms += mongoTimeoutMs;
    if (attempt < STARTUP_RETRY.attempts) ms += backoffDelay(attempt, STARTUP_RETRY.backoff, () => 1);
  }
  return ms;
}

/** How long the kubelet lets a startup probe fail before it restarts the container, in ms. */
function startupWindowMs(probe: Probe): number {
  return (
    ((probe.initialDelaySeconds ?? 0) + (probe.failureThreshold ?? 3) * (probe.periodSeconds ?? 10)) * 1000
  );
}

// ---- NetworkPolicies

interface PolicyPeer {
  podSelector?: { matchLabels?: Labels; matchExpressions?: unknown[] };
  namespaceSelector?: { matchLabels?: Labels; matchExpressions?: unknown[] };
  ipBlock?: unknown;
}
interface PolicyRule {
  from?: PolicyPeer[];
  ports?: { port?: number | string; protocol?: string; endPort?: number }[];
}
interface PolicySpec {
  podSelector: { matchLabels?: Labels; matchExpressions?: unknown[] };
  policyTypes?: string[];
  ingress?: PolicyRule[];
  egress?: unknown[];
}

/** Who may reach a port: anyone, the pods of the same namespace, or the pods of the named namespaces. */
type Source = { kind: "anyone" } | { kind: "same-namespace" } | { kind: "namespace"; name: string };

/** The ingress a Deployment's pods get: [source, container port] pairs from every policy selecting them. */
function allowedIngress(
  policies: Json[],
  deployment: Json,
): { policy: string; source: Source; port: number }[] {
  const labels = template(deployment).metadata.labels;
  const [container] = containers(deployment);
  const out: { policy: string; source: Source; port: number }[] = [];
  for (const policy of policies) {
    const spec = policy.spec as PolicySpec;
    if (spec.podSelector.matchExpressions?.length) throw new Error(`${nameOf(policy)}: matchExpressions`);
    if (!matches(spec.podSelector.matchLabels ?? {}, labels)) continue;
    for (const rule of spec.ingress ?? []) {
      const sources: Source[] =
        rule.from === undefined || rule.from.length === 0
          ? [{ kind: "anyone" }]
          : rule.from.map((peer): Source => {
              if (peer.ipBlock) return { kind: "anyone" };
              if (
                peer.podSelector?.matchExpressions?.length ||
                peer.namespaceSelector?.matchExpressions?.length
              )
                throw new Error(`${nameOf(policy)}: matchExpressions are not modelled here`);
              if (!peer.namespaceSelector) return { kind: "same-namespace" };
              const name = peer.namespaceSelector.matchLabels?.["kubernetes.io/metadata.name"];
              if (name === undefined || Object.keys(peer.namespaceSelector.matchLabels ?? {}).length !== 1)
                return { kind: "anyone" }; // any other namespace selector: too broad to reason about
              return { kind: "namespace", name };
            });
      // No `ports`: every port. Mark it as port 0 (no container port is 0).
      const ports = rule.ports?.length
        ? rule.ports.map((p) => (p.port === undefined ? 0 : (resolvePort(container!, p.port) ?? -1)))
        : [0];
      for (const source of sources)
        for (const port of ports) out.push({ policy: nameOf(policy), source, port });
    }
  }
  return out;
}

const describeSource = (s: Source) => (s.kind === "namespace" ? `namespace ${s.name}` : s.kind);

/**
 * What the NetworkPolicies of an overlay get wrong (empty when nothing): default-deny ingress for the
 * namespace; the api's http port alone open to anyone; every ops port (metrics) to the monitoring
 * namespace alone; the venue's http port to its own namespace alone; every scraped port open to the monitoring
 * namespace; no policy restricting egress.
 */
function networkPolicyProblems(docs: Json[]): string[] {
  const { ofKind } = objectsOf(docs);
  const policies = ofKind("NetworkPolicy");
  const problems: string[] = [];
  const denyAll = policies.filter((p) => {
    const spec = p.spec as PolicySpec;
    return (
      Object.keys(spec.podSelector.matchLabels ?? {}).length === 0 &&
      !spec.podSelector.matchExpressions?.length &&
      (spec.policyTypes ?? []).includes("Ingress") &&
      (spec.ingress ?? []).length === 0
    );
  });
  if (denyAll.length === 0)
    problems.push("no default-deny ingress policy (podSelector {}, no ingress rules)");
  for (const policy of policies) {
    const spec = policy.spec as PolicySpec;
    if ((spec.policyTypes ?? []).includes("Egress") || spec.egress)
      problems.push(`${nameOf(policy)} restricts egress: the pods need MongoDB, Redis, DNS and the venue`);
    if (
      !denyAll.includes(policy) &&
      !ofKind("Deployment").some((d) =>
        matches(spec.podSelector.matchLabels ?? {}, template(d).metadata.labels),
      )
    )
      problems.push(`${nameOf(policy)} selects no Deployment's pods`);
  }
  for (const deployment of ofKind("Deployment")) {
    const name = nameOf(deployment);
    const subcommand = containers(deployment)[0]!.args?.[0];
    const ingress = allowedIngress(policies, deployment);
    const httpPort = resolvePort(containers(deployment)[0]!, "http");
    const opsPort = resolvePort(containers(deployment)[0]!, "ops");
    for (const { policy, source, port: allowed } of ingress) {
      const what = `${name}: ${policy} lets ${describeSource(source)} reach port ${allowed === 0 ? "(every port)" : allowed}`;
      const monitoring = source.kind === "namespace" && source.name === MONITORING_NAMESPACE;
      // The operations port (/metrics, /health): the monitoring namespace only, for every kind.
      if (allowed !== 0 && allowed === opsPort) {
        if (!monitoring) problems.push(`${what}: the operations port is for ${MONITORING_NAMESPACE} only`);
        continue;
      }
      if (allowed === 0 || allowed !== httpPort) {
        problems.push(`${what}, neither the container's http port ${httpPort} nor its ops port ${opsPort}`);
        continue;
      }
      const ok =
        subcommand === "api"
          ? true // the public API: anyone, on its port only
          : subcommand === "exchange"
            ? source.kind === "same-namespace" // the actors place orders there, the gateways read its feed
            : false; // placement actors, gateways and execution actors open no public port
      if (!ok) problems.push(what);
    }
    if (subcommand === "api" && !ingress.some((i) => i.source.kind === "anyone"))
      problems.push(`${name}: the public API is not reachable`);
    if (subcommand === "exchange" && !ingress.some((i) => i.source.kind === "same-namespace"))
      problems.push(`${name}: the venue is not reachable from its namespace (the actors)`);
    const annotations = template(deployment).metadata.annotations ?? {};
    if (annotations["prometheus.io/scrape"] === "true") {
      const metricsPort = Number(annotations["prometheus.io/port"]);
      const scrapable = ingress.some(
        (i) =>
          i.port === metricsPort &&
          (i.source.kind === "anyone" ||
            (i.source.kind === "namespace" && i.source.name === MONITORING_NAMESPACE)),
      );
      if (!scrapable)
        problems.push(`${name}: scraped, but port ${metricsPort} is closed to ${MONITORING_NAMESPACE}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------

describe("k8s manifests as written: parsing and schema validation", () => {
  test("every manifest parses and holds known kinds", () => {
    expect(sources.length).toBeGreaterThan(10);
    for (const { file, doc } of sources) {
      expect(KINDS[keyOf(doc)], `${rel(file)}: ${keyOf(doc)} ${nameOf(doc)}`).toBeDefined();
    }
  });

  test("kubernetes-models validators accept every object", () => {
    const problems = sources
      .map(({ file, doc }) => [`${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`, modelErrors(doc)])
      .filter(([, e]) => e);
    expect(problems).toEqual([]);
  });

  test("strict schemas from the packages' types accept every object (no unknown fields)", () => {
    const problems = sources
      .map(({ file, doc }) => [`${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`, strictErrors(doc)])
      .filter(([, e]) => e);
    expect(problems).toEqual([]);
  });

  test("the validators catch what they are here for", () => {
    const deployment = structuredClone(sources.find(({ doc }) => doc.kind === "Deployment")!.doc);
    // A misspelt field: Kubernetes would drop it silently (no probe at all); only the strict schema sees it.
    const typo = structuredClone(deployment);
    const c = containers(typo)[0] as unknown as Json;
    c.livenessprobe = c.livenessProbe;
    delete c.livenessProbe;
    expect(modelErrors(typo)).toBe("");
    expect(strictErrors(typo)).toContain("livenessprobe");
    // A wrong type and a wrong enum value: both validators see them.
    const wrongType = structuredClone(deployment);
    (wrongType.spec as Json).revisionHistoryLimit = "5";
    expect(modelErrors(wrongType)).not.toBe("");
    expect(strictErrors(wrongType)).not.toBe("");
    const so = structuredClone(sources.find(({ doc }) => doc.kind === "ScaledObject")!.doc);
    ((so.spec as Json).triggers as Json[])[0]!.metadata = { threshold: 1000 };
    expect(strictErrors(so)).not.toBe("");
    const policy = structuredClone(sources.find(({ doc }) => doc.kind === "NetworkPolicy")!.doc);
    (policy.spec as Json).podselector = (policy.spec as Json).podSelector;
    expect(strictErrors(policy)).toContain("podselector");
  });

  test("no object carries status, every object is in the namespace, names are unique per kind and file set", () => {
    const seen = new Set<string>();
    for (const { file, doc } of sources) {
      const where = `${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`;
      expect(doc.status, where).toBeUndefined();
      if (doc.kind !== "Namespace") expect(asObject(doc.metadata, where).namespace, where).toBe(NAMESPACE);
      const key = `${doc.kind}/${nameOf(doc)}`;
      expect(seen.has(key), `duplicate ${key}`).toBe(false);
      seen.add(key);
    }
  });
});

describe("kustomize layout", () => {
  test("base and overlays: every manifest of base/ but the example Secret is listed, and the venue is dev's", () => {
    const base = parseYaml(join(BASE, "kustomization.yaml")) as Kustomization;
    expect(base.namespace).toBe(NAMESPACE);
    const listed = (base.resources ?? []).filter((r) => r.endsWith(".yaml"));
    const files = listFiles(BASE, [".yaml"])
      .map((f) => relative(BASE, f))
      .filter((f) => f !== "kustomization.yaml" && f !== "secret.example.yaml");
    expect([...listed].sort()).toEqual(files.sort());
    expect(existsSync(join(BASE, "exchange.yaml"))).toBe(false);
    for (const overlay of OVERLAYS) {
      const k = parseYaml(join(overlayDir(overlay), "kustomization.yaml")) as Kustomization;
      expect(k.resources, overlay).toContain("../../base");
      expect(k.namespace ?? NAMESPACE, overlay).toBe(NAMESPACE);
      const own = (k.resources ?? []).filter((r) => r.endsWith(".yaml"));
      expect(own, overlay).toEqual(overlay === "dev" ? ["exchange.yaml"] : []);
    }
    // No manifest is left where the old flat layout had them.
    expect(listFiles(K8S, [".yaml"]).filter((f) => dirname(f) === K8S)).toEqual([]);
  });

  test("every kustomization's resources, components, patches and generator files exist (kustomize's load rules)", () => {
    const files = kustomizationFiles();
    expect(files.map(rel).sort()).toEqual(
      [
        "k8s/base/kustomization.yaml",
        "k8s/grafana/kustomization.yaml",
        "k8s/overlays/dev/kustomization.yaml",
        "k8s/overlays/prod/kustomization.yaml",
        "k8s/prometheus/kustomization.yaml",
      ].sort(),
    );
    for (const file of files) {
      const dir = dirname(file);
      const k = parseYaml(file) as Kustomization;
      for (const entry of [...(k.resources ?? []), ...(k.components ?? [])]) {
        const path = join(dir, entry);
        expect(existsSync(path), `${rel(file)}: ${entry} exists`).toBe(true);
        // A directory must be a kustomization itself.
        if (statSync(path).isDirectory())
          expect(
            existsSync(join(path, "kustomization.yaml")),
            `${rel(file)}: ${entry} is a kustomization`,
          ).toBe(true);
      }
      for (const patch of k.patches ?? []) {
        if (patch.path) expect(existsSync(join(dir, patch.path)), `${rel(file)}: ${patch.path}`).toBe(true);
      }
      // kustomize reads generator files only at or below the kustomization's own directory.
      for (const generator of k.configMapGenerator ?? []) {
        for (const entry of generator.files ?? []) {
          const source = entry.includes("=") ? entry.slice(entry.indexOf("=") + 1) : entry;
          expect(existsSync(join(dir, source)), `${rel(file)} ${generator.name}: ${source}`).toBe(true);
          expect(relative(dir, join(dir, source)).startsWith(".."), `${rel(file)}: ${source} is below`).toBe(
            false,
          );
        }
      }
    }
  });

  test.each(OVERLAYS)(
    "overlays/%s builds with kustomize, and the validators accept every rendered object",
    (overlay) => {
      const docs = render(overlayDir(overlay));
      expect(docs.length).toBeGreaterThan(10);
      const problems = docs
        .map((doc) => [`${keyOf(doc)} ${nameOf(doc)}`, modelErrors(doc) || strictErrors(doc)])
        .filter(([, e]) => e);
      expect(problems).toEqual([]);
      for (const doc of docs) {
        if (doc.kind !== "Namespace")
          expect(asObject(doc.metadata, nameOf(doc)).namespace, `${keyOf(doc)} ${nameOf(doc)}`).toBe(
            NAMESPACE,
          );
      }
      const { ofKind } = objectsOf(docs);
      expect(ofKind("Namespace").map(nameOf)).toEqual([NAMESPACE]);
      // The generated ConfigMaps carry the very files test/ops validates.
      const rules = ofKind("ConfigMap").find((c) => nameOf(c) === "orders-prometheus-rules");
      expect((rules?.data as Record<string, string> | undefined)?.["orders.rules.yml"]).toBe(
        readText(join(K8S, "prometheus/rules/orders.rules.yml")),
      );
      const dashboard = ofKind("ConfigMap").find((c) => nameOf(c) === "orders-grafana-dashboard");
      expect((dashboard?.data as Record<string, string> | undefined)?.["orders.json"]).toBe(
        readText(join(K8S, "grafana/dashboards/orders.json")),
      );
    },
  );

  test("dev runs the simulated venue and points EXCHANGE_URL at it; prod and base have no simulated venue", () => {
    const dev = objectsOf(render(overlayDir("dev")));
    const venue = (o: ReturnType<typeof objectsOf>) =>
      o.ofKind("Deployment").filter((d) => containers(d).some((c) => c.args?.[0] === "exchange"));
    expect(venue(dev).map(nameOf)).toEqual(["exchange"]);
    for (const docs of [render(overlayDir("prod")), render(BASE)]) {
      const o = objectsOf(docs);
      expect(venue(o)).toEqual([]);
      expect(o.ofKind("Service").map(nameOf)).not.toContain("exchange");
    }
    const prod = objectsOf(render(overlayDir("prod")));
    // Unset would mean the in-process simulation: prod names a venue, and not one of the namespace.
    const services = prod.ofKind("Service").map(nameOf);
    // The venue and its execution feed (a WebSocket), both encrypted, neither in the namespace.
    for (const [key, protocol] of [
      ["EXCHANGE_URL", "https:"],
      ["EXCHANGE_FEED_URL", "wss:"],
    ] as const) {
      const url = new URL(prod.configMapData()[key]!);
      expect(url.protocol, key).toBe(protocol);
      expect(
        services.includes(url.hostname.split(".")[0]!),
        `${key}: ${url.hostname} is a Service of the namespace`,
      ).toBe(false);
      expect(
        render(BASE).some((d) => d.kind === "ConfigMap" && key in (d.data as Json)),
        `base sets ${key}`,
      ).toBe(false);
    }
  });
});

describe.each(OVERLAYS)("overlays/%s: cross-checks of the rendered objects", (overlay) => {
  const o = () => objectsOf(render(overlayDir(overlay)));

  test("Deployment selectors match their pod template labels", () => {
    const { ofKind, deploymentsSelectedBy } = o();
    const deployments = ofKind("Deployment");
    expect(deployments.map(nameOf).sort()).toEqual(
      overlay === "dev"
        ? ["actors", "api", "exchange", "executions", "gateway"]
        : ["actors", "api", "executions", "gateway"],
    );
    for (const d of deployments) {
      const selector = (d.spec as { selector: { matchLabels?: Labels; matchExpressions?: unknown[] } })
        .selector;
      expect(selector.matchExpressions, nameOf(d)).toBeUndefined();
      expect(Object.keys(selector.matchLabels ?? {}).length, nameOf(d)).toBeGreaterThan(0);
      expect(matches(selector.matchLabels!, template(d).metadata.labels), nameOf(d)).toBe(true);
      // Selectors must not overlap, or two Deployments fight over pods.
      expect(deploymentsSelectedBy(selector.matchLabels!).map(nameOf), nameOf(d)).toEqual([nameOf(d)]);
    }
  });

  test("containers run a known subcommand of one image, on PORT and OPS_PORT, with requests, limits and probes", () => {
    const { ofKind, configMapData } = o();
    const port = Number(configMapData().PORT);
    const opsPort = Number(configMapData().OPS_PORT);
    const images = new Set<string>();
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        const where = `${nameOf(d)}/${c.name}`;
        images.add(String(c.image));
        expect(c.args?.length, where).toBe(1);
        expect(SUBCOMMANDS.has(c.args![0]!), where).toBe(true);
        // Actors, gateways and execution actors open no public port; every kind serves its probes and
        // /metrics on OPS_PORT.
        if (NO_PUBLIC_PORT.has(c.args![0]!)) {
          expect(resolvePort(c, port), `${where} exposes no PORT`).toBeUndefined();
          expect(resolvePort(c, "http"), `${where} has no http port`).toBeUndefined();
        } else expect(resolvePort(c, port), `${where} exposes PORT ${port}`).toBe(port);
        expect(resolvePort(c, opsPort), `${where} exposes OPS_PORT ${opsPort}`).toBe(opsPort);
        for (const resource of ["cpu", "memory"]) {
          const request = c.resources?.requests?.[resource];
          const limit = c.resources?.limits?.[resource];
          expect(request, `${where} requests.${resource}`).toBeDefined();
          expect(limit, `${where} limits.${resource}`).toBeDefined();
          expect(quantity(request!), `${where} ${resource} request <= limit`).toBeLessThanOrEqual(
            quantity(limit!),
          );
        }
        expect(c.livenessProbe?.httpGet?.path, where).toBe("/health/live");
        expect(c.readinessProbe?.httpGet?.path, where).toBe("/health/ready");
        for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
          if (probe?.httpGet) expect(resolvePort(c, probe.httpGet.port), `${where} probe port`).toBe(opsPort);
          // The runtime image is distroless: an exec probe can only run the binary's own health check.
          if (probe?.exec)
            expect(probe.exec.command, `${where} exec probe`).toEqual(["/app/orders", "health"]);
        }
      }
    }
    expect(images.size).toBe(1);
  });

  test("startup probes outlast the start-up retry budget of src/process/lifecycle.ts", () => {
    const { ofKind, configMapData } = o();
    const budgetMs = worstCaseStartupMs(Number(configMapData().MONGO_TIMEOUT_MS));
    // 20 x 2 s of failed attempts + 76.2 s of backoff + 2 s waiting for Redis: about two minutes.
    expect(budgetMs).toBe(118_200);
    let connecting = 0;
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        const where = `${nameOf(d)}/${c.name}`;
        if (CONNECTING_SUBCOMMANDS.has(c.args![0]!)) {
          connecting++;
          expect(c.startupProbe, `${where} has a startup probe`).toBeDefined();
        }
        if (c.startupProbe)
          expect(
            startupWindowMs(c.startupProbe),
            `${where}: startup probe window vs ${budgetMs} ms`,
          ).toBeGreaterThan(budgetMs);
      }
    }
    // api, actors, gateway, executions.
    expect(connecting).toBe(4);
  });

  test("pods meet the namespace's Pod Security level (admission would reject them otherwise)", () => {
    const { ofKind } = o();
    const [namespace] = ofKind("Namespace");
    const level = asObject(namespace!.metadata, "namespace metadata").labels as Labels;
    expect(level["pod-security.kubernetes.io/enforce"]).toBe("restricted");
    const pods = [
      ...ofKind("Deployment").map((d) => [d, template(d)] as const),
      ...ofKind("CronJob").map((c) => [c, jobPodTemplate(c)] as const),
    ];
    expect(pods.length).toBeGreaterThan(ofKind("Deployment").length);
    for (const [d, podTemplate] of pods) {
      const pod = podTemplate.spec as PodTemplate["spec"] & {
        securityContext?: { runAsNonRoot?: boolean; seccompProfile?: { type: string } };
        hostNetwork?: boolean;
        hostPID?: boolean;
        hostIPC?: boolean;
        volumes?: Json[];
      };
      expect([pod.hostNetwork, pod.hostPID, pod.hostIPC].some(Boolean), nameOf(d)).toBe(false);
      for (const volume of pod.volumes ?? [])
        expect(
          Object.keys(volume).some((k) => k === "hostPath"),
          nameOf(d),
        ).toBe(false);
      for (const c of pod.containers as (Container & { securityContext?: Json })[]) {
        const where = `${nameOf(d)}/${c.name}`;
        const sc = (c.securityContext ?? {}) as {
          allowPrivilegeEscalation?: boolean;
          privileged?: boolean;
          runAsNonRoot?: boolean;
          capabilities?: { drop?: string[]; add?: string[] };
          seccompProfile?: { type: string };
        };
        expect(sc.allowPrivilegeEscalation, where).toBe(false);
        expect(sc.privileged ?? false, where).toBe(false);
        expect(sc.capabilities?.drop, where).toContain("ALL");
        expect(sc.capabilities?.add ?? [], where).toEqual([]);
        expect(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, where).toBe(true);
        const seccomp = (sc.seccompProfile ?? pod.securityContext?.seccompProfile)?.type;
        expect(seccomp === "RuntimeDefault" || seccomp === "Localhost", `${where} seccomp ${seccomp}`).toBe(
          true,
        );
      }
    }
  });

  test("the daily reconciliation: `orders reconcile` of the same image, one run at a time, not retried, MongoDB's URL and the overlay's venue", () => {
    const { ofKind, configMapData } = o();
    const [cronJob, ...others] = ofKind("CronJob");
    expect(others).toEqual([]);
    const spec = cronJob!.spec as {
      schedule: string;
      concurrencyPolicy: string;
      jobTemplate: { spec: { backoffLimit: number; activeDeadlineSeconds: number } };
    };
    expect(spec.schedule.split(" ")).toHaveLength(5);
    expect(spec.concurrencyPolicy).toBe("Forbid");
    expect(spec.jobTemplate.spec.backoffLimit).toBe(0);
    expect(spec.jobTemplate.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    const pod = jobPodTemplate(cronJob!).spec as PodTemplate["spec"] & { restartPolicy: string };
    expect(pod.restartPolicy).toBe("Never");
    const [container] = pod.containers as (Container & {
      env?: { name: string; valueFrom?: { secretKeyRef?: { key: string } } }[];
    })[];
    expect(container!.args?.[0]).toBe("reconcile");
    const deploymentImage = containers(ofKind("Deployment")[0]!)[0]!.image;
    expect(container!.image).toBe(deploymentImage);
    expect(container!.env?.map((e) => e.valueFrom?.secretKeyRef?.key)).toEqual(["MONGO_URL"]);
    // The venue to ask: set by every overlay (without it the command refuses to run).
    expect(configMapData().EXCHANGE_URL).toMatch(/^https?:\/\//);
  });

  test("every process kind is scraped on its metrics port; scrape annotations are explicit", () => {
    const { ofKind } = o();
    for (const d of ofKind("Deployment")) {
      const annotations = template(d).metadata.annotations ?? {};
      const scrape = annotations["prometheus.io/scrape"];
      expect(["true", "false"], `${nameOf(d)} prometheus.io/scrape`).toContain(String(scrape));
      // The dashboard, the alerts and KEDA read every kind's metrics (the venue's submissions and
      // execution reports too).
      expect(scrape, nameOf(d)).toBe("true");
      if (scrape !== "true") continue;
      expect(annotations["prometheus.io/path"], nameOf(d)).toBe("/metrics");
      const port = Number(annotations["prometheus.io/port"]);
      expect(
        containers(d).some((c) => resolvePort(c, port) === port),
        nameOf(d),
      ).toBe(true);
    }
  });

  test("termination grace covers preStop (the kubelet's sleep action) plus the shutdown deadline", () => {
    const { ofKind, configMapData } = o();
    const deadlineMs = Number(configMapData().SHUTDOWN_DEADLINE_MS);
    for (const d of ofKind("Deployment")) {
      const grace = template(d).spec.terminationGracePeriodSeconds ?? 30;
      for (const c of containers(d)) {
        const preStop = c.lifecycle?.preStop;
        expect(preStop, `${nameOf(d)} has a preStop hook`).toBeDefined();
        // The runtime image is distroless: no `sleep` binary for an exec hook.
        expect(preStop?.exec, `${nameOf(d)} preStop exec`).toBeUndefined();
        const sleepSeconds = preStop?.sleep?.seconds ?? Number.NaN;
        expect(Number.isInteger(sleepSeconds) && sleepSeconds > 0, `${nameOf(d)} preStop sleeps`).toBe(true);
        expect(
          grace * 1000,
          `${nameOf(d)}: grace ${grace}s > preStop ${sleepSeconds}s + ${deadlineMs}ms`,
        ).toBeGreaterThan(sleepSeconds * 1000 + deadlineMs);
      }
    }
  });

  test("Services select exactly one Deployment and target its container ports", () => {
    const { ofKind, deploymentsSelectedBy } = o();
    const services = ofKind("Service");
    expect(services.length).toBeGreaterThan(0);
    for (const s of services) {
      const spec = s.spec as {
        selector: Labels;
        ports: { name?: string; port: number; targetPort?: number | string }[];
      };
      const selected = deploymentsSelectedBy(spec.selector);
      expect(selected.map(nameOf), `Service ${nameOf(s)}`).toHaveLength(1);
      for (const port of spec.ports) {
        const target = port.targetPort ?? port.port;
        const resolved = containers(selected[0]!).some((c) => resolvePort(c, target) !== undefined);
        expect(resolved, `Service ${nameOf(s)} port ${port.port} -> ${target}`).toBe(true);
      }
    }
  });

  // prod: see "dev runs the simulated venue ..." above.
  if (overlay === "dev")
    test("EXCHANGE_URL and EXCHANGE_FEED_URL name the exchange Service and a port it serves", () => {
      const { ofKind, configMapData, deploymentsSelectedBy } = o();
      const data = configMapData();
      for (const key of ["EXCHANGE_URL", "EXCHANGE_FEED_URL"]) {
        const url = new URL(data[key]!);
        const service = ofKind("Service").find((s) => nameOf(s) === url.hostname.split(".")[0]);
        expect(service, `${key}: Service for ${url.hostname}`).toBeDefined();
        const ports = (service!.spec as { ports: { port: number }[] }).ports.map((p) => p.port);
        expect(ports, key).toContain(Number(url.port || 80));
        const [deployment] = deploymentsSelectedBy((service!.spec as { selector: Labels }).selector);
        expect(containers(deployment!)[0]!.args, key).toEqual(["exchange"]);
      }
      // The feed is the venue's WebSocket at /executions on the same port: what the gateway would
      // derive from EXCHANGE_URL anyway (src/config.ts exchangeFeedUrl).
      expect(data.EXCHANGE_FEED_URL).toBe(exchangeFeedUrl({ EXCHANGE_URL: data.EXCHANGE_URL }) ?? "");
      expect(new URL(data.EXCHANGE_FEED_URL!).pathname).toBe("/executions");
    });

  test("autoscalers target existing Deployments that leave replicas to them", () => {
    const { ofKind } = o();
    const targets: string[] = [];
    for (const scaler of [...ofKind("HorizontalPodAutoscaler"), ...ofKind("ScaledObject")]) {
      const ref = (scaler.spec as { scaleTargetRef: { apiVersion?: string; kind?: string; name: string } })
        .scaleTargetRef;
      const where = `${scaler.kind} ${nameOf(scaler)}`;
      expect(ref.kind ?? "Deployment", where).toBe("Deployment");
      expect(ref.apiVersion ?? "apps/v1", where).toBe("apps/v1");
      const deployment = ofKind("Deployment").find((d) => nameOf(d) === ref.name);
      expect(deployment, `${where} -> ${ref.name}`).toBeDefined();
      expect(
        (deployment!.spec as Json).replicas,
        `${ref.name} sets replicas although ${where} owns them`,
      ).toBeUndefined();
      targets.push(ref.name);
    }
    // The gateway is not autoscaled: one active and one hot standby (see below).
    expect(targets.sort()).toEqual(["actors", "api", "executions"]);
    // The HPA scales on CPU utilisation, which is relative to the requests.
    for (const hpa of ofKind("HorizontalPodAutoscaler")) {
      const name = (hpa.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name;
      const deployment = ofKind("Deployment").find((d) => nameOf(d) === name)!;
      const metrics = (hpa.spec as { metrics: { type: string; resource?: { name: string } }[] }).metrics;
      for (const m of metrics.filter((m) => m.type === "Resource")) {
        for (const c of containers(deployment))
          expect(
            c.resources?.requests?.[m.resource!.name],
            `${name} ${m.resource!.name} request`,
          ).toBeDefined();
      }
    }
  });

  test("each ScaledObject asks the monitoring Prometheus for its backlog by process_kind, in any namespace", () => {
    const { ofKind } = o();
    const scaledObjects = ofKind("ScaledObject");
    expect(scaledObjects.map(nameOf).sort()).toEqual(Object.keys(SCALED_BY_KEDA).sort());
    for (const so of scaledObjects) {
      const spec = so.spec as {
        scaleTargetRef: { name: string };
        minReplicaCount: number;
        maxReplicaCount: number;
        triggers: { type: string; metricType?: string; metadata: Record<string, string> }[];
      };
      const where = `ScaledObject ${nameOf(so)}`;
      const expected = SCALED_BY_KEDA[spec.scaleTargetRef.name];
      expect(expected, `${where} scales ${spec.scaleTargetRef.name}`).toBeDefined();
      expect(spec.minReplicaCount, where).toBeGreaterThanOrEqual(1);
      expect(spec.maxReplicaCount, where).toBeGreaterThan(spec.minReplicaCount);
      const triggers = spec.triggers.filter((t) => t.type === "prometheus");
      expect(triggers, where).toHaveLength(1);
      const [trigger] = triggers;
      const server = new URL(trigger!.metadata.serverAddress!);
      expect(server.protocol, where).toMatch(/^https?:$/);
      expect(server.hostname.split(".")[1], `${where}: Prometheus runs in the monitoring namespace`).toBe(
        MONITORING_NAMESPACE,
      );
      expect(Number(trigger!.metadata.threshold), where).toBeGreaterThan(0);
      const query = trigger!.metadata.query!;
      for (const name of expected!.metrics) expect(query, where).toContain(name);
      // No namespace name: the same query works wherever the overlay puts the objects. It selects on
      // process_kind, which the service sets on every sample.
      expect(query, where).not.toMatch(/namespace\s*(=|!=|=~|!~)\s*"/);
      expect(query, where).not.toContain(`${NAMESPACE}"`);
      expect(query, where).toContain(`process_kind="${expected!.processKind}"`);
      // Every pod of a kind reports the same stream gauges (the consumer group's): a sum over pods
      // would grow with the pod count and scale out without end (test/ops/prometheus-rules.test.ts
      // evaluates the queries on such series).
      expect(query, where).not.toMatch(/\bsum\b/);
    }
  });

  test("KEDA: an empty result is an error, and errors fall back to a safe replica count", () => {
    const { ofKind } = o();
    for (const so of ofKind("ScaledObject")) {
      const spec = so.spec as {
        minReplicaCount: number;
        maxReplicaCount: number;
        fallback?: { failureThreshold: number; replicas: number };
        triggers: { type: string; metricType?: string; metadata: Record<string, string> }[];
      };
      const where = `ScaledObject ${nameOf(so)}`;
      for (const trigger of spec.triggers.filter((t) => t.type === "prometheus")) {
        // Default "true" reads "no series" as 0 and scales in while the actors' metrics are missing.
        expect(trigger.metadata.ignoreNullValues, where).toBe("false");
        // KEDA applies a fallback only to AverageValue triggers.
        expect(trigger.metricType ?? "AverageValue", where).toBe("AverageValue");
      }
      expect(spec.fallback, `${where} has a fallback`).toBeDefined();
      expect(spec.fallback!.failureThreshold, where).toBeGreaterThanOrEqual(1);
      expect(spec.fallback!.replicas, where).toBeGreaterThanOrEqual(spec.minReplicaCount);
      expect(spec.fallback!.replicas, where).toBeLessThanOrEqual(spec.maxReplicaCount);
    }
  });

  test("PodDisruptionBudgets select a Deployment and leave room to drain a node", () => {
    const { ofKind, deploymentsSelectedBy, minReplicas } = o();
    const pdbs = ofKind("PodDisruptionBudget");
    expect(pdbs.map(nameOf).sort()).toEqual(["actors", "api", "executions", "gateway"]);
    for (const pdb of pdbs) {
      const spec = pdb.spec as {
        selector: { matchLabels: Labels };
        minAvailable?: number | string;
        maxUnavailable?: number | string;
      };
      const selected = deploymentsSelectedBy(spec.selector.matchLabels);
      expect(selected.map(nameOf), `PDB ${nameOf(pdb)}`).toHaveLength(1);
      if (typeof spec.minAvailable === "number") {
        expect(spec.minAvailable, `PDB ${nameOf(pdb)} would block every eviction`).toBeLessThan(
          minReplicas(selected[0]!),
        );
      }
      if (typeof spec.maxUnavailable === "number") expect(spec.maxUnavailable).toBeGreaterThan(0);
    }
  });

  test("envFrom references a ConfigMap of the manifests and the example Secret, env its keys", () => {
    const { ofKind } = o();
    const configMaps = new Set(ofKind("ConfigMap").map(nameOf));
    const secretName = nameOf(secretExample);
    const secretKeys = Object.keys(secretExample.stringData as Record<string, string>);
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        for (const from of c.envFrom ?? []) {
          if (from.configMapRef)
            expect(configMaps.has(from.configMapRef.name), `${nameOf(d)} -> ${from.configMapRef.name}`).toBe(
              true,
            );
          if (from.secretRef) expect(from.secretRef.name, nameOf(d)).toBe(secretName);
        }
        // A single key of the Secret, by name (an optional Secret of its own may be missing: the
        // venue's admin token).
        for (const variable of c.env ?? []) {
          const ref = variable.valueFrom?.secretKeyRef;
          if (!ref || ref.optional) continue;
          const where = `${nameOf(d)} ${variable.name}`;
          expect(ref.name, where).toBe(secretName);
          expect(secretKeys, where).toContain(ref.key);
          expect(ref.key, `${where}: the variable has the key's name`).toBe(variable.name);
        }
      }
    }
  });

  test("the gateway: two replicas (one active, one hot standby) spread over nodes, one disruption at a time, Redis credentials only", () => {
    const { ofKind, minReplicas } = o();
    const gateway = ofKind("Deployment").find((d) => nameOf(d) === "gateway")!;
    const [container] = containers(gateway);
    expect(container!.args).toEqual(["gateway"]);
    // Not autoscaled: a fixed count, which minReplicas() reads from the Deployment itself.
    expect((gateway.spec as Json).replicas).toBe(2);
    expect(minReplicas(gateway)).toBe(2);
    // A rollout brings a ready standby up before it stops an old pod.
    const strategy = (gateway.spec as { strategy?: { type?: string; rollingUpdate?: Json } }).strategy;
    expect(strategy?.type).toBe("RollingUpdate");
    expect(strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    // A node failure must not take the standby with the active one.
    const spread = (
      template(gateway).spec as {
        topologySpreadConstraints?: { topologyKey: string; labelSelector: { matchLabels: Labels } }[];
      }
    ).topologySpreadConstraints;
    expect(spread?.some((c) => c.topologyKey === "kubernetes.io/hostname")).toBe(true);
    for (const constraint of spread ?? [])
      expect(matches(constraint.labelSelector.matchLabels, template(gateway).metadata.labels)).toBe(true);
    // Its PodDisruptionBudget keeps one gateway through a drain.
    const pdb = ofKind("PodDisruptionBudget").find((p) => nameOf(p) === "gateway")!;
    expect((pdb.spec as { minAvailable?: number }).minAvailable).toBe(1);
    // Redis only: no MongoDB credentials (no envFrom of the whole Secret, no MONGO_URL).
    expect((container!.envFrom ?? []).some((from) => from.secretRef)).toBe(false);
    expect((container!.env ?? []).map((v) => v.name)).toEqual(["REDIS_URL"]);
    // Neither an HPA nor a ScaledObject fights over its replicas.
    for (const scaler of [...ofKind("HorizontalPodAutoscaler"), ...ofKind("ScaledObject")])
      expect((scaler.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name).not.toBe("gateway");
  });

  test("the ConfigMap plus the example Secret is a valid configuration naming every variable", () => {
    const { configMapData } = o();
    expect(parseYamlDocuments(join(BASE, "secret.example.yaml"))).toHaveLength(1);
    expect(modelErrors(secretExample)).toBe("");
    expect(strictErrors(secretExample)).toBe("");
    const data = configMapData();
    const secret = secretExample.stringData as Record<string, string>;
    expect(Object.keys(secret).sort()).toEqual(["MONGO_URL", "REDIS_URL"]);
    // The service's own validation, as at start-up (the example MONGO_URL names a replica set of three).
    const config = loadConfig({ ...data, ...secret });
    // HOSTNAME: Kubernetes sets it to the pod's name in every container. EXCHANGE_ADMIN_TOKEN: only the
    // simulated venue of overlays/dev reads it, from a Secret of its own. EXCHANGE_URL and
    // EXCHANGE_FEED_URL: optional (loadConfig({}) has no key for them), and every overlay sets both.
    const known = new Set([
      ...Object.keys(loadConfig({})).filter((key) => key !== "HOSTNAME" && key !== "EXCHANGE_ADMIN_TOKEN"),
      "EXCHANGE_URL",
      "EXCHANGE_FEED_URL",
    ]);
    for (const key of Object.keys(data)) expect(known.has(key), `unknown variable ${key}`).toBe(true);
    for (const key of known) expect(key in data || key in secret, `variable ${key} missing`).toBe(true);
    expect(Object.keys(data).some((key) => key in secret)).toBe(false);
    expect(config.PORT).toBe(Number(data.PORT));
    expect(config.EXCHANGE_URL).toBe(data.EXCHANGE_URL);
    expect(config.EXCHANGE_FEED_URL).toBe(data.EXCHANGE_FEED_URL);
  });

  test("NetworkPolicies: default deny; api port public; every kind's metrics from monitoring only; the venue in-namespace only", () => {
    expect(networkPolicyProblems(render(overlayDir(overlay)))).toEqual([]);
  });
});

describe("NetworkPolicies: the checker itself", () => {
  const broken = (change: (docs: Json[]) => void) => {
    const docs = structuredClone(render(overlayDir("dev")));
    change(docs);
    return networkPolicyProblems(docs);
  };
  const policy = (docs: Json[], name: string) =>
    docs.find((d) => d.kind === "NetworkPolicy" && nameOf(d) === name)!;
  const spec = (docs: Json[], name: string) => policy(docs, name).spec as PolicySpec;

  test("sees a missing default deny", () => {
    expect(
      broken((docs) => docs.splice(docs.indexOf(policy(docs, "default-deny-ingress")), 1)).join("\n"),
    ).toContain("default-deny");
  });

  test("sees the actors opened to everyone, or to another namespace", () => {
    expect(
      broken((docs) => {
        spec(docs, "actors-metrics-from-monitoring").ingress![0]!.from = undefined;
      }).join("\n"),
    ).toContain("actors: actors-metrics-from-monitoring lets anyone reach port 9464");
    expect(
      broken((docs) => {
        spec(docs, "actors-metrics-from-monitoring").ingress![0]!.from![0]!.namespaceSelector!.matchLabels = {
          "kubernetes.io/metadata.name": "default",
        };
      }).join("\n"),
    ).toContain("namespace default");
  });

  test("sees the gateway or the execution actors opened beyond monitoring, or not scrapable", () => {
    expect(
      broken((docs) => {
        spec(docs, "gateway-metrics-from-monitoring").ingress![0]!.from = undefined;
      }).join("\n"),
    ).toContain("gateway: gateway-metrics-from-monitoring lets anyone reach port 9464");
    expect(
      broken((docs) => {
        spec(docs, "executions-metrics-from-monitoring").ingress![0]!.from = [{ podSelector: {} }];
      }).join("\n"),
    ).toContain("executions: executions-metrics-from-monitoring lets same-namespace reach port 9464");
    expect(
      broken((docs) => {
        spec(docs, "executions-metrics-from-monitoring").ingress![0]!.ports = undefined;
      }).join("\n"),
    ).toContain(
      "executions: executions-metrics-from-monitoring lets namespace monitoring reach port (every port)",
    );
    expect(
      broken((docs) => docs.splice(docs.indexOf(policy(docs, "gateway-metrics-from-monitoring")), 1)).join(
        "\n",
      ),
    ).toContain("gateway: scraped, but port 9464 is closed to monitoring");
    expect(
      broken((docs) => docs.splice(docs.indexOf(policy(docs, "exchange-metrics-from-monitoring")), 1)).join(
        "\n",
      ),
    ).toContain("exchange: scraped, but port 9464 is closed to monitoring");
  });

  test("sees the venue opened to the monitoring namespace or beyond", () => {
    expect(
      broken((docs) => {
        spec(docs, "exchange-in-namespace-only").ingress![0]!.from!.push({
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
        });
      }).join("\n"),
    ).toContain("exchange: exchange-in-namespace-only lets namespace monitoring reach port 3000");
    expect(
      broken((docs) => {
        spec(docs, "exchange-in-namespace-only").ingress![0]!.from = [{ ipBlock: { cidr: "0.0.0.0/0" } }];
      }).join("\n"),
    ).toContain("lets anyone");
  });

  test("sees every port opened on the api, a scraped port closed, and egress restricted", () => {
    expect(
      broken((docs) => {
        spec(docs, "api-public").ingress![0]!.ports = undefined;
      }).join("\n"),
    ).toContain("(every port)");
    expect(
      broken((docs) => {
        spec(docs, "api-metrics-from-monitoring").ingress![0]!.from = undefined;
      }).join("\n"),
    ).toContain(
      "api: api-metrics-from-monitoring lets anyone reach port 9464: the operations port is for monitoring only",
    );
    expect(
      broken((docs) => docs.splice(docs.indexOf(policy(docs, "actors-metrics-from-monitoring")), 1)).join(
        "\n",
      ),
    ).toContain("actors: scraped, but port 9464 is closed to monitoring");
    expect(
      broken((docs) => {
        spec(docs, "default-deny-ingress").policyTypes = ["Ingress", "Egress"];
      }).join("\n"),
    ).toContain("restricts egress");
  });
});
