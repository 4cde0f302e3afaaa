/**
 * .github/workflows: actionlint (built by scripts/install-ops-tools.sh) checks every workflow offline
 * (syntax, expressions, action inputs, job and step structure), and the test job does what the README
 * promises: type-check, lint and the whole suite against a real MongoDB replica set.
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { listFiles, parseYaml, readText, repoPath, run } from "./ops-helpers.ts";

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
    expect(runs).toMatch(/^\s*bun test\s*$/m);
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
});
