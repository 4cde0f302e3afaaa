/**
 * Dockerfile: dockerfile-utils' validator with every check on, assertions on the image (multi-stage,
 * every base image pinned, a distroless glibc runtime that Kubernetes never asks for a shell, non-root
 * numeric USER matching the Kubernetes securityContext, exec-form ENTRYPOINT and HEALTHCHECK, EXPOSE =
 * the PORT default), and the build stage replayed without Docker: its COPY lines into a temporary
 * directory (honouring .dockerignore) and its RUN lines there, then the binary it produces is started
 * and must answer /health/live.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { ValidationSeverity, type ValidatorSettings, validate } from "dockerfile-utils";
import { loadConfig } from "../../src/config.ts";
import {
  imagePinProblem,
  type Json,
  manifestDocuments,
  ROOT,
  readText,
  removeDir,
  repoPath,
  run,
  type ServiceProcess,
  startService,
  tempDir,
} from "../support/ops.ts";

const DOCKERFILE = readText(repoPath("Dockerfile"));

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}
interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined, comments dropped (no heredocs, no escape directive). */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    while (line.endsWith("\\") && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      if (next.startsWith("#")) continue;
      line = `${line.slice(0, -1).trimEnd()} ${next}`;
    }
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!, line: start + 1 });
  }
  return out;
}

function stages(text: string): Stage[] {
  const out: Stage[] = [];
  for (const instruction of instructions(text)) {
    if (instruction.keyword === "FROM") {
      const [image, as, name] = instruction.args.split(/\s+/);
      out.push({ image: image!, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else {
      out.at(-1)?.instructions.push(instruction);
    }
  }
  return out;
}

/** `--flag=value` options and positional arguments of a COPY/ADD line. */
function copyArgs(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith("--")) {
    const [flag, value = ""] = words.shift()!.slice(2).split("=");
    flags[flag!] = value;
  }
  return { flags, sources: words.slice(0, -1), dest: words.at(-1)! };
}

/** A Docker ignore glob as a regular expression: `**` any path, `*` and `?` within one segment. */
function globToRegex(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else out += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return out;
}

/** .dockerignore as a predicate on context-relative paths (patterns with * and **; no `!` exceptions). */
function dockerignore(): (path: string) => boolean {
  const patterns = readText(repoPath(".dockerignore"))
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  expect(patterns.some((p) => p.startsWith("!"))).toBe(false);
  const regexes = patterns.map(
    (pattern) => new RegExp(`^${globToRegex(pattern.replace(/^\/+|\/+$/g, ""))}$`),
  );
  return (path) => {
    const parts = path.split("/");
    return parts.some((_, i) => regexes.some((r) => r.test(parts.slice(0, i + 1).join("/"))));
  };
}

const allStages = stages(DOCKERFILE);
const buildStage = allStages[0]!;
const runtime = allStages.at(-1)!;
const lastOf = (stage: Stage, keyword: string) =>
  stage.instructions.filter((i) => i.keyword === keyword).at(-1);
const lastEntrypoint = () => (JSON.parse(lastOf(runtime, "ENTRYPOINT")!.args) as string[])[0]!;

describe("Dockerfile", () => {
  test("dockerfile-utils finds no problem, with every optional check raised to an error", () => {
    const everything: ValidatorSettings = {
      deprecatedMaintainer: ValidationSeverity.ERROR,
      directiveCasing: ValidationSeverity.ERROR,
      emptyContinuationLine: ValidationSeverity.ERROR,
      instructionCasing: ValidationSeverity.ERROR,
      instructionCmdMultiple: ValidationSeverity.ERROR,
      instructionEntrypointMultiple: ValidationSeverity.ERROR,
      instructionHealthcheckMultiple: ValidationSeverity.ERROR,
      instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
      instructionWorkdirRelative: ValidationSeverity.ERROR,
    };
    const diagnostics = validate(DOCKERFILE, everything).map(
      (d) => `line ${d.range.start.line + 1}: ${d.message}`,
    );
    expect(diagnostics).toEqual([]);
    // The validator itself does report problems.
    expect(
      validate("FROM oven/bun:1 AS build\nEXPOSE 99999\nENTRYPOINT ['/app/orders']\n", everything).length,
    ).toBeGreaterThan(0);
  });

  test("two stages: the pinned Bun compiles, a distroless glibc image runs", () => {
    expect(allStages.length).toBe(2);
    expect(buildStage.name).toBe("build");
    // The Bun that .ci/run and the CI workflow pin (test/ops/ci-workflow.test.ts keeps those equal).
    const pinned = /^BUN_VERSION=(\S+)$/m.exec(readText(repoPath(".ci/run")))?.[1];
    expect(buildStage.image).toBe(`oven/bun:${pinned}`);
    // The compiled binary links glibc (not musl); cc adds libgcc and libstdc++. No shell in it.
    expect(runtime.image).toMatch(/^gcr\.io\/distroless\/cc-debian\d+(:nonroot)?(@sha256:[0-9a-f]{64})?$/);
    expect(runtime.name).toBe("runtime");
  });

  test("every base image is pinned to an exact version (or a digest), never latest", () => {
    const problems = allStages.map((stage) => imagePinProblem(stage.image)).filter(Boolean);
    expect(problems).toEqual([]);
    // The rule itself refuses what it must.
    for (const moving of ["oven/bun:1", "oven/bun", "debian:bookworm-slim", "mongo:7", "redis:latest"])
      expect(imagePinProblem(moving), moving).not.toBeNull();
    for (const fixed of ["oven/bun:1.4.5", "prom/prometheus:v3.16.0", "debian:bookworm-20250113-slim"])
      expect(imagePinProblem(fixed), fixed).toBeNull();
    expect(imagePinProblem(`gcr.io/distroless/cc-debian12@sha256:${"a".repeat(64)}`)).toBeNull();
  });

  test("Kubernetes runs nothing in the container but the binary: the runtime has no shell or sleep", () => {
    // exec hooks and probes of every container (preStop must use the kubelet's `sleep` action).
    const execs: string[] = [];
    const visit = (value: unknown, path: string) => {
      if (Array.isArray(value)) {
        value.forEach((v, i) => {
          visit(v, `${path}[${i}]`);
        });
      } else if (value && typeof value === "object") {
        for (const [key, child] of Object.entries(value as Json)) {
          if (key === "exec" && child && typeof child === "object") {
            const command = (child as { command?: string[] }).command ?? [];
            if (command[0] !== lastEntrypoint()) execs.push(`${path}.exec: ${JSON.stringify(command)}`);
          } else visit(child, `${path}.${key}`);
        }
      }
    };
    const documents = manifestDocuments();
    for (const { file, doc } of documents) visit(doc, `${file.split("/").at(-1)} ${doc.kind}`);
    // Not vacuous: the Deployments are there, and their preStop hooks wait with the kubelet's own sleep.
    const preStops = documents.flatMap(({ doc }) =>
      [...JSON.stringify(doc).matchAll(/"preStop":(\{[^}]*\}?)/g)].map((m) => m[1]!),
    );
    expect(documents.some(({ doc }) => doc.kind === "Deployment")).toBe(true);
    expect(preStops.length).toBeGreaterThan(0);
    for (const hook of preStops) expect(hook).toStartWith('{"sleep":{"seconds":');
    expect(
      execs,
      "distroless has no /bin/sleep: use `lifecycle.preStop.sleep.seconds` (Kubernetes 1.29+) instead of exec",
    ).toEqual([]);
  });

  test("the build stage installs from the lock file and runs the package's build script", () => {
    const runs = buildStage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    expect(runs.some((r) => r.startsWith("bun install --frozen-lockfile"))).toBe(true);
    expect(runs.at(-1)).toBe("bun run build");
    const build = JSON.parse(readText(repoPath("package.json"))).scripts.build as string;
    expect(build).toMatch(/^bun build --compile\b/);
    expect(build).toContain("src/main.ts");
  });

  test("the runtime runs as a non-root numeric user, the one the Kubernetes pods demand", () => {
    const user = lastOf(runtime, "USER")!.args;
    const [uid, gid] = user.split(":").map(Number);
    expect(Number.isInteger(uid) && uid! > 0, `USER ${user} is numeric and not root`).toBe(true);
    for (const { doc } of manifestDocuments().filter(({ doc }) => doc.kind === "Deployment")) {
      const security = (doc.spec as { template: { spec: { securityContext: Record<string, unknown> } } })
        .template.spec.securityContext;
      expect(security.runAsNonRoot).toBe(true);
      expect(security.runAsUser).toBe(uid);
      if (gid !== undefined) expect(security.runAsGroup).toBe(gid);
    }
  });

  test("exec-form HEALTHCHECK runs the binary's `health` subcommand, as compose's health check does", () => {
    const healthcheck = lastOf(runtime, "HEALTHCHECK")!.args;
    const cmd = /^(?:--\S+\s+)*CMD\s+(\[.*\])$/.exec(healthcheck)?.[1];
    expect(cmd, `HEALTHCHECK ${healthcheck} is exec form`).toBeDefined();
    expect(JSON.parse(cmd!)).toEqual([lastEntrypoint(), "health"]);
  });

  test("exec-form ENTRYPOINT is the binary, CMD a subcommand, EXPOSE the PORT and OPS_PORT defaults", () => {
    const entrypoint = JSON.parse(lastOf(runtime, "ENTRYPOINT")!.args);
    expect(entrypoint).toEqual(["/app/orders"]);
    expect(JSON.parse(lastOf(runtime, "CMD")!.args)).toEqual(["all"]);
    const { PORT: port, OPS_PORT: opsPort } = loadConfig({});
    expect(lastOf(runtime, "EXPOSE")!.args).toBe(`${port} ${opsPort}`);
    const env = runtime.instructions.filter((i) => i.keyword === "ENV").map((i) => i.args);
    expect(env).toContain(`PORT=${port} OPS_PORT=${opsPort}`);
    // The binary is copied from where the build script writes it to where ENTRYPOINT runs it.
    const copy = runtime.instructions.find((i) => i.keyword === "COPY" && i.args.includes("--from="))!;
    const { flags, sources, dest } = copyArgs(copy.args);
    expect(flags.from).toBe(buildStage.name!);
    const workdir = lastOf(buildStage, "WORKDIR")!.args;
    const outfile = /--outfile\s+(\S+)/.exec(
      JSON.parse(readText(repoPath("package.json"))).scripts.build,
    )![1]!;
    expect(sources).toEqual([join(workdir, outfile)]);
    expect(dest).toBe(entrypoint[0]);
  });

  test(".dockerignore keeps the context small but lets every COPY source through", () => {
    const ignored = dockerignore();
    for (const path of ["node_modules", "dist", ".git", "test", "k8s/base/api.yaml"])
      expect(ignored(path), path).toBe(true);
    for (const stage of allStages) {
      for (const copy of stage.instructions.filter(
        (i) => i.keyword === "COPY" && !i.args.includes("--from="),
      )) {
        for (const source of copyArgs(copy.args).sources) {
          expect(existsSync(repoPath(source)), `COPY ${source} exists`).toBe(true);
          expect(ignored(source.replace(/^\.\//, "")), `COPY ${source} is not ignored`).toBe(false);
        }
      }
    }
  });

  describe("the build stage, replayed without Docker", () => {
    let root: string | undefined;
    let binary: ServiceProcess | undefined;
    afterAll(async () => {
      await binary?.stop();
      removeDir(root);
    }, 60_000);

    test("its COPY and RUN lines produce the binary, which serves /health/live and /metrics", async () => {
      root = tempDir("image-build");
      const ignored = dockerignore();
      let workdir = "/";
      for (const instruction of buildStage.instructions) {
        const inRoot = (path: string) => join(root!, path.startsWith("/") ? path : join(workdir, path));
        switch (instruction.keyword) {
          case "WORKDIR":
            workdir = instruction.args.startsWith("/") ? instruction.args : join(workdir, instruction.args);
            mkdirSync(inRoot(workdir), { recursive: true });
            break;
          case "COPY": {
            const { flags, sources, dest } = copyArgs(instruction.args);
            expect(Object.keys(flags), `line ${instruction.line}`).toEqual([]);
            for (const source of sources) {
              const from = repoPath(source);
              const isDir = statSync(from).isDirectory();
              const target =
                dest.endsWith("/") && !isDir ? join(inRoot(dest), source.split("/").at(-1)!) : inRoot(dest);
              mkdirSync(isDir ? target : dirname(target), { recursive: true });
              cpSync(from, target, {
                recursive: true,
                filter: (path) => path === from || !ignored(path.slice(ROOT.length + 1)),
              });
            }
            break;
          }
          case "RUN": {
            const result = await run(["sh", "-c", instruction.args], {
              cwd: inRoot(workdir),
              timeoutMs: 240_000,
            });
            expect(result.code, `RUN ${instruction.args}\n${result.stdout}\n${result.stderr}`).toBe(0);
            break;
          }
          default:
            throw new Error(`line ${instruction.line}: the replay does not know ${instruction.keyword}`);
        }
      }
      const outfile = /--outfile\s+(\S+)/.exec(
        JSON.parse(readText(repoPath("package.json"))).scripts.build,
      )![1]!;
      const built = join(root, workdir, outfile);
      expect(existsSync(built)).toBe(true);
      binary = await startService("compiled orders exchange", [built, "exchange"]);
      const metrics = await (await fetch(`${binary.opsUrl}/metrics`)).text();
      expect(metrics).toMatch(/^process_resident_memory_bytes\{process_kind="exchange"\} \d+/m);
      expect((await fetch(`${binary.opsUrl}/health/ready`)).status).toBe(200);
    }, 300_000);
  });
});
