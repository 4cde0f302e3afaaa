/**
 * docker-compose.yml: the compose-spec JSON Schema shipped in dclint, dclint's error-level rules, and
 * cross-checks that the schema cannot make: dependencies, volumes, the replica set and AOF flags,
 * mounted files, the app configuration, every image pinned to an exact version (versions in step with
 * the tools that validate their files), and the app health check (`orders health`, the image's own
 * HEALTHCHECK) run for real against a live process.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { exchangeFeedUrl, loadConfig } from "../../src/config.ts";
import {
  createAjv,
  imagePinProblem,
  parseYaml,
  ROOT,
  readText,
  repoPath,
  run,
  type ServiceProcess,
  schemaErrors,
  startExchangeFromSource,
} from "../support/ops.ts";
import { freePort } from "../support/wait-for.ts";

interface Healthcheck {
  test: string[] | string;
}
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string; target?: string } | string;
  command?: string[] | string;
  environment?: Record<string, string> | string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: Healthcheck;
  deploy?: { replicas?: number };
  stop_grace_period?: string;
}
interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const COMPOSE_FILE = repoPath("docker-compose.yml");
const compose = parseYaml(COMPOSE_FILE) as Compose;
const services = compose.services;
const APP_SERVICES = ["api", "actors", "exchange", "gateway", "executions"];
/** Services that take no traffic: replicas, no published port. */
const REPLICATED_SERVICES = ["actors", "gateway", "executions"];

/** Compose's own unescaping of `$$` (the file uses no other interpolation). */
const unescapeDollars = (value: string) => value.replaceAll("$$", "$");
const env = (service: ComposeService): Record<string, string> => {
  if (Array.isArray(service.environment)) {
    return Object.fromEntries(
      service.environment.map((entry) => entry.split(/=(.*)/s).slice(0, 2) as [string, string]),
    );
  }
  return Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([k, v]) => [k, unescapeDollars(String(v))]),
  );
};
const commandOf = (service: ComposeService) =>
  Array.isArray(service.command) ? service.command : (service.command ?? "").split(/\s+/);
const dependencies = (service: ComposeService): Record<string, { condition: string }> =>
  Array.isArray(service.depends_on)
    ? Object.fromEntries(service.depends_on.map((name) => [name, { condition: "service_started" }]))
    : (service.depends_on ?? {});
/** Duration in ms of a compose duration such as "30s", "1m30s". */
function durationMs(value: string): number {
  let total = 0;
  for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g)) {
    total +=
      Number(m[1]) *
      ({ h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001 } as Record<string, number>)[m[2]!]!;
  }
  return total;
}

describe("docker-compose.yml", () => {
  test("matches the compose-spec JSON Schema shipped in dclint", () => {
    const schema = JSON.parse(readText(repoPath("node_modules/dclint/schemas/compose.schema.json")));
    // The schema names draft-07 by its https URL, which ajv registers under http.
    expect(schema.$schema).toMatch(/json-schema\.org\/draft-07\/schema/);
    const validate = createAjv().compile({ ...schema, $schema: "http://json-schema.org/draft-07/schema#" });
    expect(schemaErrors(validate, compose)).toBe("");
    // The schema rejects unknown service keys, so a typo cannot pass silently.
    const broken = structuredClone(compose) as unknown as {
      services: Record<string, Record<string, unknown>>;
    };
    broken.services.api!.depends_ons = broken.services.api!.depends_on;
    expect(schemaErrors(validate, broken)).toContain("depends_ons");
  });

  test("dclint reports no errors", async () => {
    const result = await run(
      ["bun", repoPath("node_modules/dclint/bin/dclint.cjs"), "--quiet", "--formatter", "json", COMPOSE_FILE],
      {
        timeoutMs: 30_000,
      },
    );
    expect(`${result.stdout.trim()}${result.stderr}`).toBe("[]");
    expect(result.code).toBe(0);
  });

  test("depends_on targets exist, and service_healthy waits only on services with a health check", () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [target, { condition }] of Object.entries(dependencies(service))) {
        expect(services[target], `${name} depends on ${target}`).toBeDefined();
        expect(["service_started", "service_healthy", "service_completed_successfully"]).toContain(condition);
        if (condition === "service_healthy")
          expect(services[target]!.healthcheck, `${target} has a health check`).toBeDefined();
      }
    }
    // Start order: the app waits for healthy data stores, the actors and the gateways for a healthy
    // venue. The gateway needs Redis only.
    for (const app of ["api", "actors", "executions"]) {
      expect(dependencies(services[app]!).mongo?.condition, app).toBe("service_healthy");
      expect(dependencies(services[app]!).redis?.condition, app).toBe("service_healthy");
    }
    expect(dependencies(services.actors!).exchange?.condition).toBe("service_healthy");
    expect(dependencies(services.gateway!).redis?.condition).toBe("service_healthy");
    expect(dependencies(services.gateway!).exchange?.condition).toBe("service_healthy");
    expect(dependencies(services.gateway!).mongo).toBeUndefined();
  });

  test("named volumes are declared and used, bind-mounted files exist in the repository", () => {
    const declared = new Set(Object.keys(compose.volumes ?? {}));
    const used = new Set<string>();
    for (const [name, service] of Object.entries(services)) {
      for (const volume of service.volumes ?? []) {
        const [source] = volume.split(":");
        if (source!.startsWith(".") || source!.startsWith("/")) {
          expect(existsSync(join(ROOT, source!)), `${name}: ${source} exists`).toBe(true);
        } else {
          expect(declared.has(source!), `${name}: volume ${source} declared`).toBe(true);
          used.add(source!);
        }
      }
    }
    expect([...declared].sort()).toEqual([...used].sort());
  });

  test("mongo runs as a replica set that its health check initiates, redis appends to its AOF", () => {
    const mongo = services.mongo!;
    expect(mongo.image).toMatch(/^mongo:7/);
    const args = commandOf(mongo);
    const replSet = args[args.indexOf("--replSet") + 1];
    expect(args).toContain("--replSet");
    const check = (mongo.healthcheck!.test as string[]).join(" ");
    expect(check).toContain("rs.initiate(");
    expect(check).toContain(`_id: '${replSet}'`);
    expect(check).toContain("host: 'mongo:27017'");
    expect(check).toContain("isWritablePrimary");
    for (const app of ["api", "actors", "executions"]) {
      const url = new URL(env(services[app]!).MONGO_URL!.replace(/^mongodb:/, "http:"));
      expect(url.hostname, app).toBe("mongo");
      expect(url.searchParams.get("replicaSet"), app).toBe(String(replSet));
    }
    const redis = services.redis!;
    expect(redis.image).toMatch(/^redis:7/);
    const redisArgs = commandOf(redis);
    expect(redisArgs[redisArgs.indexOf("--appendonly") + 1]).toBe("yes");
  });

  test("app services build the Dockerfile, run a subcommand with a valid configuration and drain on stop", () => {
    for (const name of APP_SERVICES) {
      const service = services[name]!;
      expect(typeof service.build === "object" ? service.build.context : service.build, name).toBe(".");
      const build = service.build as { dockerfile?: string; target?: string };
      expect(existsSync(join(ROOT, build.dockerfile ?? "Dockerfile")), name).toBe(true);
      if (build.target)
        expect(readText(repoPath(build.dockerfile ?? "Dockerfile"))).toMatch(
          new RegExp(`^FROM .+ AS ${build.target}$`, "m"),
        );
      expect(commandOf(service), name).toEqual([name]);
      const config = loadConfig(env(service));
      expect(service.stop_grace_period, `${name} stop_grace_period`).toBeDefined();
      expect(durationMs(service.stop_grace_period!), name).toBeGreaterThan(config.SHUTDOWN_DEADLINE_MS);
      for (const key of ["MONGO_URL", "REDIS_URL", "EXCHANGE_URL", "EXCHANGE_FEED_URL"]) {
        const value = env(service)[key];
        if (value)
          expect(
            services[new URL(value.replace(/^(mongodb|redis|wss?):/, "http:")).hostname],
            `${name} ${key}`,
          ).toBeDefined();
      }
    }
    expect(env(services.api!).EXCHANGE_URL ?? env(services.actors!).EXCHANGE_URL).toBe(
      "http://exchange:3000",
    );
    for (const name of REPLICATED_SERVICES) {
      expect(services[name]!.deploy?.replicas, name).toBe(2);
      // Replicas cannot share a host port.
      expect(services[name]!.ports, name).toBeUndefined();
    }
  });

  test("the gateways read the venue's feed, on the venue's port, with Redis only", () => {
    const gateway = env(services.gateway!);
    const venuePort = loadConfig(env(services.exchange!)).PORT;
    // The venue's WebSocket at /executions on its own port: what EXCHANGE_URL would derive.
    expect(gateway.EXCHANGE_FEED_URL).toBe(`ws://exchange:${venuePort}/executions`);
    expect(gateway.EXCHANGE_FEED_URL).toBe(exchangeFeedUrl({ EXCHANGE_URL: gateway.EXCHANGE_URL }) ?? "");
    // No MongoDB credentials: the gateway never touches MongoDB.
    expect(gateway.MONGO_URL).toBeUndefined();
    expect(new URL(gateway.REDIS_URL!.replace(/^redis:/, "http:")).hostname).toBe("redis");
    // The execution actors apply to MongoDB what the gateways append to Redis: the same Redis and prefix.
    const executions = loadConfig(env(services.executions!));
    const gatewayConfig = loadConfig(gateway);
    expect(gatewayConfig.REDIS_URL).toBe(executions.REDIS_URL);
    expect(gatewayConfig.REDIS_KEY_PREFIX).toBe(executions.REDIS_KEY_PREFIX);
    expect(gatewayConfig.EXECUTION_PARTITIONS).toBe(executions.EXECUTION_PARTITIONS);
  });

  test("host ports are unique and bound to loopback", () => {
    const hostPorts = Object.values(services).flatMap((s) => s.ports ?? []);
    for (const port of hostPorts) expect(port).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
    const published = hostPorts.map((p) => p.split(":")[1]);
    expect(new Set(published).size).toBe(published.length);
  });

  test("prometheus loads the compose scrape configuration, whose targets are the app services", () => {
    const prometheus = services.prometheus!;
    const configFlag = commandOf(prometheus).find((a) => a.startsWith("--config.file="))!;
    const inContainer = configFlag.split("=")[1]!;
    const mount = prometheus
      .volumes!.map((v) => v.split(":"))
      .find(([, target]) => inContainer.startsWith(`${target}/`));
    expect(mount, `a volume provides ${inContainer}`).toBeDefined();
    const onHost = join(ROOT, mount![0]!, inContainer.slice(mount![1]!.length));
    expect(existsSync(onHost)).toBe(true);
    const config = parseYaml(onHost) as {
      scrape_configs: {
        static_configs?: { targets: string[] }[];
        dns_sd_configs?: { names: string[]; port: number }[];
      }[];
    };
    const targets = config.scrape_configs.flatMap((job) => [
      ...(job.static_configs ?? []).flatMap((s) => s.targets),
      ...(job.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
    ]);
    for (const app of APP_SERVICES) {
      const port = loadConfig(env(services[app]!)).OPS_PORT;
      expect(targets, `${app} is scraped on its OPS_PORT`).toContain(`${app}:${port}`);
    }
  });

  test("every image is pinned to an exact version (or a digest), never latest", () => {
    const images = Object.entries(services).flatMap(([name, s]) => (s.image ? [[name, s.image]] : []));
    expect(images.length).toBeGreaterThan(0);
    const problems = images.map(([name, image]) => [name, imagePinProblem(image!)]).filter(([, p]) => p);
    expect(problems).toEqual([]);
    // The app services are built from the Dockerfile (whose base images its own test checks).
    for (const name of APP_SERVICES) expect(services[name]!.image, name).toBeUndefined();
  });

  test("images are pinned to the versions whose files the tests validate", () => {
    const script = readText(repoPath("scripts/install-ops-tools.sh"));
    const prometheusVersion = /PROMETHEUS_VERSION="\$\{PROMETHEUS_VERSION:-([0-9.]+)\}"/.exec(script)?.[1];
    expect(services.prometheus!.image).toBe(`prom/prometheus:v${prometheusVersion}`);
    const grafanaSchema = JSON.parse(readText(repoPath("node_modules/@grafana/schema/package.json"))).version;
    expect(services.grafana!.image).toBe(`grafana/grafana:${grafanaSchema}`);
  });

  describe("the app health check: `orders health`, run against a live process", () => {
    const entrypoint = (
      JSON.parse(/^ENTRYPOINT\s+(\[.*\])$/m.exec(readText(repoPath("Dockerfile")))![1]!) as string[]
    )[0]!;
    // Until src/main.ts has the `health` subcommand, the runs below are skipped (said once, not hidden).
    const hasHealthCommand = /["']health["']/.test(readText(repoPath("src/main.ts")));
    if (!hasHealthCommand)
      console.warn(
        "[compose] src/main.ts has no `health` subcommand yet: the live health check runs are skipped",
      );
    let exchange: ServiceProcess | undefined;
    beforeAll(async () => {
      if (hasHealthCommand) exchange = await startExchangeFromSource();
    }, 60_000);
    afterAll(async () => {
      await exchange?.stop();
    }, 60_000);

    /** The check as compose runs it, with the image's binary replaced by the same code from source. */
    const healthcheck = (name: string) => {
      const check = services[name]!.healthcheck!.test as string[];
      expect(check[0]).toBe("CMD");
      const command = check.slice(1).map(unescapeDollars);
      return command[0] === entrypoint ? ["bun", "src/main.ts", ...command.slice(1)] : command;
    };

    test("every app service runs the image's binary with `health`: no shell, no curl in the image", () => {
      for (const name of APP_SERVICES) {
        expect(services[name]!.healthcheck!.test, name).toEqual(["CMD", entrypoint, "health"]);
      }
    });

    test.skipIf(!hasHealthCommand)("passes against a ready process on OPS_PORT", async () => {
      for (const name of APP_SERVICES) {
        const result = await run(healthcheck(name), {
          env: { ...process.env, OPS_PORT: String(exchange!.opsPort) },
          timeoutMs: 10_000,
        });
        expect(result.code, `${name}: ${result.stderr}`).toBe(0);
      }
    });

    test.skipIf(!hasHealthCommand)("fails when nothing answers", async () => {
      const closed = String(await freePort());
      const result = await run(healthcheck("api"), {
        env: { ...process.env, OPS_PORT: closed },
        timeoutMs: 10_000,
      });
      expect(result.code).not.toBe(0);
    });
  });
});
