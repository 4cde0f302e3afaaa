/** The compiled single binary, started as a user would start it, driven over HTTP. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnOwned } from "../support/servers/child-process.ts";
import {
  bearer,
  getOrder,
  isolatedEnv,
  orderBody,
  postOrder,
  ROOT,
  type Servers,
  spawnService,
  startServers,
} from "../support/system.ts";
import { freePort, waitFor } from "../support/wait-for.ts";

const BINARY = join(ROOT, "dist/orders");
let servers: Servers;

beforeAll(async () => {
  const build = Bun.spawnSync(["bun", "run", "build"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
  servers = await startServers();
});

afterAll(async () => {
  await servers?.stop();
});

async function ready(opsUrl: string): Promise<boolean> {
  return (await fetch(`${opsUrl}/health/ready`)).status === 200;
}

describe("dist/orders", () => {
  test("`all` becomes ready, places an order that the venue's reports fill, and exits 0 on SIGTERM within a few seconds", async () => {
    expect(existsSync(BINARY)).toBe(true);
    // The venue from the binary too, filling every order in two trades: `all` runs the gateway and
    // the execution actors against its feed.
    const venue = await spawnService(
      "exchange",
      isolatedEnv(servers, { EXCHANGE_FILLS_PER_ORDER: "2", EXCHANGE_LIMIT_UNFILLED_RATE: "0" }),
      { binary: BINARY },
    );
    const env = isolatedEnv(servers, { EXCHANGE_URL: venue.baseUrl });
    const service = await spawnService("all", env, { binary: BINARY });
    try {
      await waitFor(() => ready(service.opsUrl), { timeoutMs: 20_000, message: "/health/ready 200" });
      const response = await postOrder(
        service.baseUrl,
        orderBody({ type: "limit", limit_price: "12.34", quantity: 7 }),
      );
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: string };
      const filled = await waitFor(
        async () => {
          const order = (await (await getOrder(service.baseUrl, id)).json()) as {
            status: string;
            limit_price: number;
            filled_quantity: number;
            average_price: number;
            executions: { quantity: number; price: number; exec_type: string }[];
          };
          return order.status === "filled" ? order : null;
        },
        { timeoutMs: 20_000, message: "order filled" },
      );
      expect(filled.limit_price).toBe(12.34);
      expect(filled).toMatchObject({ filled_quantity: 7, average_price: 12.34 });
      expect(filled.executions.map((e) => [e.exec_type, e.quantity, e.price])).toEqual([
        ["trade", 4, 12.34],
        ["trade", 3, 12.34],
      ]);
      const metrics = await (await fetch(`${service.opsUrl}/metrics`)).text();
      expect(metrics).toMatch(/placement_outcomes_total\{outcome="placed"[^}]*\} 1/);
      expect(metrics).toMatch(/executions_reports_applied_total\{outcome="applied"[^}]*\} 2/);
      expect((await fetch(`${service.baseUrl}/swagger/json`)).status).toBe(200);

      const stopping = performance.now();
      service.process.signal("SIGTERM");
      expect(await service.process.exited).toBe(0);
      expect(performance.now() - stopping).toBeLessThan(5_000);
    } finally {
      await service.process.kill();
      await venue.process.kill();
    }
  });

  test("each process kind serves health and metrics on OPS_PORT, never on its public port", async () => {
    const venue = await spawnService("exchange", isolatedEnv(servers), { binary: BINARY });
    const env = isolatedEnv(servers, { EXCHANGE_URL: venue.baseUrl });
    for (const kind of ["api", "actors", "executions", "gateway", "exchange"] as const) {
      const service = await spawnService(kind, env, { binary: BINARY });
      try {
        expect((await fetch(`${service.opsUrl}/health/live`)).status).toBe(200);
        await waitFor(() => ready(service.opsUrl), { timeoutMs: 20_000, message: `${kind} ready` });
        expect(await (await fetch(`${service.opsUrl}/metrics`)).text()).toContain(`process_kind="${kind}"`);
        // The public port: the API or the venue answer 404 for the operations routes; actors open none.
        const publicMetrics = await fetch(`${service.baseUrl}/metrics`).then(
          (response) => response.status,
          () => "closed",
        );
        const opensNoPublicPort = kind === "actors" || kind === "executions" || kind === "gateway";
        expect({ kind, publicMetrics }).toEqual({ kind, publicMetrics: opensNoPublicPort ? "closed" : 404 });
        service.process.signal("SIGTERM");
        expect(await service.process.exited).toBe(0);
      } finally {
        await service.process.kill();
      }
    }
    await venue.process.kill();
  });

  test("bad configuration stops the process with one message naming every bad variable", async () => {
    const proc = spawnOwned("bad-config", [BINARY, "api"], {
      env: {
        ...process.env,
        PORT: "http",
        MONGO_URL: "postgres://nowhere/x",
        REDIS_URL: "redis://127.0.0.1:1",
      },
    });
    expect(await proc.exited).toBe(2);
    const lines = proc.logs.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("PORT");
    expect(lines[0]).toContain("MONGO_URL");
    expect(lines[0]).not.toContain("REDIS_URL");
  });

  test("an unknown subcommand prints the usage and exits 2", async () => {
    const proc = spawnOwned("usage", [BINARY, "serve"]);
    expect(await proc.exited).toBe(2);
    expect(proc.logs).toContain(
      "usage: orders <api|actors|executions|gateway|all|exchange|dlq|reconcile|health>",
    );
  });

  test("reconcile without a venue to ask exits 2 and says why", async () => {
    const env = { ...process.env };
    delete env.EXCHANGE_URL;
    const proc = spawnOwned("reconcile", [BINARY, "reconcile"], { env });
    expect(await proc.exited).toBe(2);
    expect(proc.logs).toContain("EXCHANGE_URL is not set");
  });
});

describe("the README's run command", () => {
  test("starts Redis and a MongoDB-wire server when none answers, then the service becomes ready", async () => {
    const [port, opsPort, mongoPort, redisPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const data = mkdtempSync(join(tmpdir(), "orders-run-local-"));
    // Readable like a clone's folder: the script's PostgreSQL runs as the postgres user when root.
    chmodSync(data, 0o755);
    const run = spawnOwned("run-local", ["bash", join(ROOT, "scripts/run-local.sh")], {
      cwd: ROOT,
      cleanupDir: data,
      env: {
        ...process.env,
        PORT: String(port),
        OPS_PORT: String(opsPort),
        MONGO_URL: `mongodb://127.0.0.1:${mongoPort}/orders`,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        LOCAL_DATA_DIR: data,
        LOG_LEVEL: "warn",
      },
    });
    try {
      await waitFor(() => ready(`http://127.0.0.1:${opsPort}`), {
        timeoutMs: 60_000,
        intervalMs: 250,
        message: "run-local ready",
      });
      expect(run.logs).toContain(`API reference: http://127.0.0.1:${port}/swagger`);
      // The demo key the script made and printed, in the curl line it printed too.
      const key = /Demo API key \(account demo\): (\S+)/.exec(run.logs)?.[1];
      expect(key).toBeDefined();
      expect(run.logs).toContain(`-H 'authorization: Bearer ${key}'`);
      expect((await postOrder(`http://127.0.0.1:${port}`, orderBody(), bearer(key!))).status).toBe(201);
      expect((await postOrder(`http://127.0.0.1:${port}`, orderBody())).status).toBe(401);
    } finally {
      run.signal("SIGTERM");
      await Promise.race([run.exited, Bun.sleep(15_000)]);
      await run.kill();
      // The servers the script started are gone with it.
      await waitFor(
        async () =>
          !(await fetch(`http://127.0.0.1:${opsPort}/health/live`).then(
            () => true,
            () => false,
          )),
        { timeoutMs: 15_000, message: "service stopped" },
      );
      rmSync(data, { recursive: true, force: true });
    }
  });
});
