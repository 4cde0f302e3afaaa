/**
 * k8s/: every manifest parses, passes the kubernetes-models validators (types, enums, required
 * fields) and a strict JSON Schema generated from the same packages' TypeScript types (unknown fields
 * rejected, which the packages' validators let through), and the objects fit together: selectors,
 * ports, scale targets, disruption budgets, probes, grace periods and the configuration itself.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { loadConfig } from "../../src/config.ts";
import {
  asObject,
  createAjv,
  type Json,
  K8S,
  listFiles,
  manifestDocuments,
  parseYaml,
  parseYamlDocuments,
  rel,
  schemaErrors,
  schemaFromTypes,
} from "./ops-helpers.ts";

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
  "keda.sh/v1alpha1/ScaledObject": {
    model: ScaledObject as unknown as ModelClass,
    dts: "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
    type: "IScaledObject",
  },
};

const NAMESPACE = "orders";
const SUBCOMMANDS = new Set(["api", "actors", "all", "exchange"]);

const docs = manifestDocuments();
const keyOf = (doc: Json) => `${doc.apiVersion}/${doc.kind}`;
const nameOf = (doc: Json) => String(asObject(doc.metadata, "metadata").name);
const ofKind = (kind: string) => docs.filter(({ doc }) => doc.kind === kind).map(({ doc }) => doc);

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

// ---- helpers over the parsed objects

type Labels = Record<string, string>;

interface Container {
  name: string;
  args?: string[];
  image?: string;
  ports?: { name?: string; containerPort: number }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command?: string[] }; sleep?: { seconds: number } } };
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
}
interface PodTemplate {
  metadata: { labels: Labels; annotations?: Record<string, string> };
  spec: { containers: Container[]; terminationGracePeriodSeconds?: number };
}
const template = (deployment: Json) => (deployment.spec as { template: PodTemplate }).template;
const containers = (deployment: Json) => template(deployment).spec.containers;

function matches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function deploymentsSelectedBy(selector: Labels): Json[] {
  return ofKind("Deployment").filter((d) => matches(selector, template(d).metadata.labels));
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

function configMapData(): Record<string, string> {
  const cm = ofKind("ConfigMap").find((c) => nameOf(c) === "orders-config");
  if (!cm) throw new Error("no ConfigMap orders-config");
  return cm.data as Record<string, string>;
}

const secretExample = parseYaml(join(K8S, "secret.example.yaml")) as Json;

function minReplicas(deployment: Json): number {
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
}

describe("k8s manifests: parsing and schema validation", () => {
  test("every manifest parses and holds known kinds", () => {
    expect(docs.length).toBeGreaterThan(10);
    for (const { file, doc } of docs) {
      expect(KINDS[keyOf(doc)], `${rel(file)}: ${keyOf(doc)} ${nameOf(doc)}`).toBeDefined();
    }
  });

  test("kubernetes-models validators accept every object", () => {
    const problems = docs
      .map(({ file, doc }) => [`${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`, modelErrors(doc)])
      .filter(([, e]) => e);
    expect(problems).toEqual([]);
  });

  test("strict schemas from the packages' types accept every object (no unknown fields)", () => {
    const problems = docs
      .map(({ file, doc }) => [`${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`, strictErrors(doc)])
      .filter(([, e]) => e);
    expect(problems).toEqual([]);
  });

  test("the validators catch what they are here for", () => {
    const deployment = structuredClone(ofKind("Deployment")[0]!) as Json;
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
    const so = structuredClone(ofKind("ScaledObject")[0]!) as Json;
    ((so.spec as Json).triggers as Json[])[0]!.metadata = { threshold: 1000 };
    expect(strictErrors(so)).not.toBe("");
  });

  test("no object carries status, every object is in the namespace, names are unique per kind", () => {
    const seen = new Set<string>();
    for (const { file, doc } of docs) {
      const where = `${rel(file)} ${keyOf(doc)} ${nameOf(doc)}`;
      expect(doc.status, where).toBeUndefined();
      if (doc.kind !== "Namespace") expect(asObject(doc.metadata, where).namespace, where).toBe(NAMESPACE);
      const key = `${doc.kind}/${nameOf(doc)}`;
      expect(seen.has(key), `duplicate ${key}`).toBe(false);
      seen.add(key);
    }
    expect(ofKind("Namespace").map(nameOf)).toEqual([NAMESPACE]);
  });
});

describe("k8s manifests: cross-checks", () => {
  test("Deployment selectors match their pod template labels", () => {
    const deployments = ofKind("Deployment");
    expect(deployments.map(nameOf).sort()).toEqual(["actors", "api", "exchange"]);
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

  test("containers run a known subcommand of one image, on PORT, with requests, limits and probes", () => {
    const port = Number(configMapData().PORT);
    const images = new Set<string>();
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        const where = `${nameOf(d)}/${c.name}`;
        images.add(String(c.image));
        expect(c.args?.length, where).toBe(1);
        expect(SUBCOMMANDS.has(c.args![0]!), where).toBe(true);
        expect(resolvePort(c, port), `${where} exposes PORT ${port}`).toBe(port);
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
          if (probe?.httpGet) expect(resolvePort(c, probe.httpGet.port), `${where} probe port`).toBe(port);
        }
      }
    }
    expect(images.size).toBe(1);
  });

  test("pods meet the namespace's Pod Security level (admission would reject them otherwise)", () => {
    const [namespace] = ofKind("Namespace");
    const level = asObject(namespace!.metadata, "namespace metadata").labels as Labels;
    expect(level["pod-security.kubernetes.io/enforce"]).toBe("restricted");
    for (const d of ofKind("Deployment")) {
      const pod = template(d).spec as PodTemplate["spec"] & {
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

  test("scrape annotations point at the metrics port", () => {
    for (const d of ofKind("Deployment")) {
      const annotations = template(d).metadata.annotations ?? {};
      expect(annotations["prometheus.io/scrape"], nameOf(d)).toBe("true");
      expect(annotations["prometheus.io/path"], nameOf(d)).toBe("/metrics");
      const port = Number(annotations["prometheus.io/port"]);
      expect(
        containers(d).some((c) => resolvePort(c, port) === port),
        nameOf(d),
      ).toBe(true);
    }
  });

  test("termination grace covers preStop plus the shutdown deadline", () => {
    const deadlineMs = Number(configMapData().SHUTDOWN_DEADLINE_MS);
    for (const d of ofKind("Deployment")) {
      const grace = template(d).spec.terminationGracePeriodSeconds ?? 30;
      for (const c of containers(d)) {
        const preStop = c.lifecycle?.preStop;
        expect(preStop, `${nameOf(d)} has a preStop hook`).toBeDefined();
        const command = preStop?.exec?.command ?? [];
        const sleepSeconds =
          preStop?.sleep?.seconds ?? (command[0] === "sleep" ? Number(command[1]) : Number.NaN);
        expect(Number.isFinite(sleepSeconds), `${nameOf(d)} preStop sleeps`).toBe(true);
        expect(
          grace * 1000,
          `${nameOf(d)}: grace ${grace}s > preStop ${sleepSeconds}s + ${deadlineMs}ms`,
        ).toBeGreaterThan(sleepSeconds * 1000 + deadlineMs);
      }
    }
  });

  test("Services select exactly one Deployment and target its container ports", () => {
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

  test("EXCHANGE_URL names the exchange Service and a port it serves", () => {
    const url = new URL(configMapData().EXCHANGE_URL!);
    const service = ofKind("Service").find((s) => nameOf(s) === url.hostname.split(".")[0]);
    expect(service, `Service for ${url.hostname}`).toBeDefined();
    const ports = (service!.spec as { ports: { port: number }[] }).ports.map((p) => p.port);
    expect(ports).toContain(Number(url.port || 80));
    const [deployment] = deploymentsSelectedBy((service!.spec as { selector: Labels }).selector);
    expect(containers(deployment!)[0]!.args).toEqual(["exchange"]);
  });

  test("autoscalers target existing Deployments that leave replicas to them", () => {
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
    expect(targets.sort()).toEqual(["actors", "api"]);
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

  test("the ScaledObject asks Prometheus for the backlog of this namespace, gated on the breaker", () => {
    const [so] = ofKind("ScaledObject");
    const spec = so!.spec as {
      minReplicaCount: number;
      maxReplicaCount: number;
      triggers: { type: string; metadata: Record<string, string> }[];
    };
    expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    expect(spec.maxReplicaCount).toBeGreaterThan(spec.minReplicaCount);
    const trigger = spec.triggers.find((t) => t.type === "prometheus")!;
    expect(new URL(trigger.metadata.serverAddress!).protocol).toMatch(/^https?:$/);
    expect(Number(trigger.metadata.threshold)).toBeGreaterThan(0);
    const query = trigger.metadata.query!;
    for (const name of [
      "placement_stream_lag_entries",
      "placement_stream_pending_entries",
      "exchange_breaker_state",
    ]) {
      expect(query).toContain(name);
    }
    for (const m of query.matchAll(/namespace="([^"]*)"/g)) expect(m[1]).toBe(NAMESPACE);
  });

  test("PodDisruptionBudgets select a Deployment and leave room to drain a node", () => {
    const pdbs = ofKind("PodDisruptionBudget");
    expect(pdbs.map(nameOf).sort()).toEqual(["actors", "api"]);
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

  test("envFrom references a ConfigMap of the manifests and the example Secret", () => {
    const configMaps = new Set(ofKind("ConfigMap").map(nameOf));
    const secretName = nameOf(secretExample);
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        for (const from of c.envFrom ?? []) {
          if (from.configMapRef)
            expect(configMaps.has(from.configMapRef.name), `${nameOf(d)} -> ${from.configMapRef.name}`).toBe(
              true,
            );
          if (from.secretRef) expect(from.secretRef.name, nameOf(d)).toBe(secretName);
        }
      }
    }
  });

  test("the ConfigMap plus the example Secret is a valid configuration naming every variable", () => {
    expect(parseYamlDocuments(join(K8S, "secret.example.yaml"))).toHaveLength(1);
    expect(modelErrors(secretExample)).toBe("");
    expect(strictErrors(secretExample)).toBe("");
    const data = configMapData();
    const secret = secretExample.stringData as Record<string, string>;
    expect(Object.keys(secret).sort()).toEqual(["MONGO_URL", "REDIS_URL"]);
    // The service's own validation, as at start-up.
    const config = loadConfig({ ...data, ...secret });
    const known = new Set([...Object.keys(loadConfig({})), "EXCHANGE_URL"]);
    for (const key of Object.keys(data)) expect(known.has(key), `unknown variable ${key}`).toBe(true);
    for (const key of known) expect(key in data || key in secret, `variable ${key} missing`).toBe(true);
    expect(Object.keys(data).some((key) => key in secret)).toBe(false);
    expect(config.PORT).toBe(Number(data.PORT));
  });

  test("kustomization lists every manifest but the example Secret, and its generator files exist", () => {
    const kustomization = parseYaml(join(K8S, "kustomization.yaml")) as {
      namespace: string;
      resources: string[];
      configMapGenerator: { name: string; files: string[] }[];
    };
    expect(kustomization.namespace).toBe(NAMESPACE);
    const manifests = listFiles(K8S, [".yaml"])
      .filter((f) => !f.includes(`${K8S}/prometheus/`) && !f.includes(`${K8S}/grafana/`))
      .map((f) => f.slice(K8S.length + 1))
      .filter((f) => f !== "kustomization.yaml" && f !== "secret.example.yaml");
    expect([...kustomization.resources].sort()).toEqual(manifests.sort());
    for (const generator of kustomization.configMapGenerator) {
      for (const file of generator.files)
        expect(existsSync(join(K8S, file)), `${generator.name}: ${file}`).toBe(true);
    }
  });
});
