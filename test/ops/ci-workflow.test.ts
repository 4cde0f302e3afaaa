/**
 * .github/workflows: actionlint (built by scripts/install-ops-tools.sh) checks every workflow offline
 * (syntax, expressions, action inputs, job and step structure), the test job does what the README
 * promises (type-check, lint and the whole suite, with the README's command, against a real MongoDB
 * replica set), and the toolchain is pinned to one Bun version everywhere it is installed.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { listFiles, parseYaml, readText, repoPath, run } from "../support/ops.ts";

const ACTIONLINT = [
  process.env.ACTIONLINT,
  join(homedir(), ".cache/orders-service/bin/actionlint"),
  Bun.which("actionlint"),
].find((path): path is string => typeof path === "string" && path !== "" && existsSync(path));
const WORKFLOWS = listFiles(repoPath(".github/workflows"), [".yml", ".yaml"]);

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}
interface Workflow {
  jobs: Record<string, { steps: Step[]; env?: Record<string, string>; services?: Record<string, unknown> }>;
}

describe("CI workflow", () => {
  test("actionlint accepts every workflow", async () => {
    if (!ACTIONLINT) throw new Error("no actionlint: run scripts/install-ops-tools.sh (or set ACTIONLINT)");
    expect(WORKFLOWS.length).toBeGreaterThan(0);
    const result = await run([ACTIONLINT, "-no-color", ...WORKFLOWS], { timeoutMs: 30_000 });
    expect(`${result.stdout}${result.stderr}`).toBe("");
    expect(result.code).toBe(0);
  });

  test("the test job type-checks, lints and runs the suite against a MongoDB replica set", () => {
    const workflow = parseYaml(repoPath(".github/workflows/ci.yml")) as Workflow;
    const job = workflow.jobs.test!;
    const runs = job.steps.map((s) => s.run ?? "").join("\n");
    const scripts = JSON.parse(readText(repoPath("package.json"))).scripts as Record<string, string>;
    expect(job.steps.some((s) => s.uses?.startsWith("oven-sh/setup-bun@"))).toBe(true);
    expect(runs).toContain("bun install --frozen-lockfile");
    for (const script of ["typecheck", "lint"]) {
      expect(scripts[script], `package.json has a ${script} script`).toBeDefined();
      expect(runs).toContain(`bun run ${script}`);
    }
    // The README's command: package.json's test script carries the timeout (bunfig.toml cannot).
    expect(runs).toMatch(/^\s*bun run test\s*$/m);
    expect(scripts.test).toMatch(/^bun test .*--timeout \d+/);
    expect(runs).toContain("scripts/install-ops-tools.sh");
    // The harness takes TEST_MONGO_URL as an external MongoDB; it must name the replica set that the
    // start step initiates.
    const url = new URL(job.env!.TEST_MONGO_URL!.replace(/^mongodb:/, "http:"));
    const replicaSet = url.searchParams.get("replicaSet");
    expect(replicaSet).toBeTruthy();
    expect(runs).toContain(`--replSet ${replicaSet}`);
    expect(runs).toContain(
      `rs.initiate({ _id: '${replicaSet}', members: [{ _id: 0, host: '${url.host}' }] })`,
    );
  });

  test("one Bun version everywhere: .ci/run, the workflow, the Dockerfile's build image, package.json", () => {
    const pinned = /^BUN_VERSION=(\S+)$/m.exec(readText(repoPath(".ci/run")))?.[1];
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    const ciRun = readText(repoPath(".ci/run"));
    expect(ciRun).toContain('npm install -g "bun@$BUN_VERSION"');
    const workflow = parseYaml(repoPath(".github/workflows/ci.yml")) as Workflow;
    const setupBun = workflow.jobs.test!.steps.find((s) => s.uses?.startsWith("oven-sh/setup-bun@"))!;
    expect(String(setupBun.with?.["bun-version"])).toBe(pinned!);
    expect(readText(repoPath("Dockerfile"))).toMatch(
      new RegExp(`^FROM oven/bun:${pinned!.replaceAll(".", "\\.")} `, "m"),
    );
    const pkg = JSON.parse(readText(repoPath("package.json"))) as {
      packageManager?: string;
      engines?: { bun?: string };
    };
    if (pkg.packageManager === undefined && pkg.engines?.bun === undefined)
      console.warn("[ci-workflow] package.json pins no Bun yet (packageManager / engines.bun)");
    if (pkg.packageManager !== undefined) expect(pkg.packageManager).toBe(`bun@${pinned}`);
    if (pkg.engines?.bun !== undefined) expect(pkg.engines.bun).toBe(pinned!);
    // The Bun running this test is the pinned one when it runs under .ci/run or the workflow.
    if (process.env.CI) expect(Bun.version).toBe(pinned!);
  });

  test("the workflow's MongoDB is the image docker-compose.yml runs, and Go is an exact version", () => {
    const workflow = parseYaml(repoPath(".github/workflows/ci.yml")) as Workflow;
    const steps = workflow.jobs.test!.steps;
    const runs = steps.map((s) => s.run ?? "").join("\n");
    const compose = parseYaml(repoPath("docker-compose.yml")) as {
      services: Record<string, { image?: string }>;
    };
    const mongo = compose.services.mongo!.image!;
    expect(runs).toContain(` ${mongo} --replSet`);
    const setupGo = steps.find((s) => s.uses?.startsWith("actions/setup-go@"));
    if (setupGo) expect(String(setupGo.with?.["go-version"])).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
