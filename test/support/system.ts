/**
 * Shared fixtures: real servers per test file, a fresh database and key prefix per test, and helpers
 * to run the service in process or as real processes (from source or the compiled binary).
 */

import { afterAll, beforeAll } from "bun:test";
import { resolve } from "node:path";
import { MongoClient } from "mongodb";
import { startPlacementActors } from "../../actors/placement/process.ts";
import { MongoApiKeyStore } from "../../src/adapters/mongo/api-key-store.ts";
import { type Config, databaseName, loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/logger.ts";
import { startExchange } from "../../src/process/exchange.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import { startService } from "../../src/process/service.ts";
import { type OwnedProcess, spawnOwned } from "./servers/child-process.ts";
import {
  type FerretBackend,
  mongoUrlFor,
  startMongo,
  startRedis,
  type TestServer,
} from "./servers/servers.ts";
import { VENUE_ADMIN_TOKEN } from "./venue-admin.ts";
import { freePort, uniqueName, waitFor } from "./wait-for.ts";

export const ROOT = resolve(import.meta.dir, "../..");

export interface Servers {
  redis: TestServer;
  mongo: TestServer;
  stop(): Promise<void>;
}

export async function startServers(options: { ferretBackend?: FerretBackend } = {}): Promise<Servers> {
  const [redis, mongo] = await Promise.all([startRedis(), startMongo(options)]);
  return {
    redis,
    mongo,
    async stop() {
      await Promise.allSettled([redis.stop(), mongo.stop()]);
    },
  };
}

/** Stops everything registered, newest first; every stop runs even when one fails. */
export class Cleanup {
  private readonly tasks: (() => Promise<unknown> | unknown)[] = [];
  add(task: () => Promise<unknown> | unknown): void {
    this.tasks.push(task);
  }
  async run(): Promise<void> {
    while (this.tasks.length > 0) {
      const task = this.tasks.pop()!;
      try {
        await task();
      } catch {
        // keep going: the next resource must still be released
      }
    }
  }
}

/** The servers of one test file, with the Cleanup that its afterAll runs. */
export interface FileServers extends Servers {
  /** Runs newest first at afterAll, the servers' stop last: what a test spawned stops before them. */
  readonly cleanup: Cleanup;
}

/**
 * Starts the harness servers before this file's tests and stops them after, even when a test fails.
 * The returned object may be used in tests and hooks (once beforeAll has run).
 */
export function useServers(options: { ferretBackend?: FerretBackend } = {}): FileServers {
  let started: Servers | undefined;
  const cleanup = new Cleanup();
  beforeAll(async () => {
    started = await startServers(options);
    cleanup.add(() => started?.stop());
  }, 60_000);
  afterAll(() => cleanup.run(), 60_000);
  const get = (): Servers => {
    if (!started) throw new Error("the servers start in beforeAll");
    return started;
  };
  return {
    get redis() {
      return get().redis;
    },
    get mongo() {
      return get().mongo;
    },
    stop: () => get().stop(),
    cleanup,
  };
}

/** Environment for one isolated deployment: its own database and Redis key prefix. */
export function isolatedEnv(
  servers: Servers,
  overrides: Record<string, string> = {},
): Record<string, string> {
  const name = uniqueName("t");
  return {
    PORT: "0",
    OPS_PORT: "0",
    MONGO_URL: mongoUrlFor(servers.mongo, name),
    REDIS_URL: servers.redis.url,
    REDIS_KEY_PREFIX: name,
    EXCHANGE_LATENCY_MS: "10",
    EXCHANGE_FAILURE_RATE: "0",
    EXCHANGE_ADMIN_TOKEN: VENUE_ADMIN_TOKEN,
    ...overrides,
  };
}

export function configFrom(env: Record<string, string>): Config {
  return loadConfig(env);
}

/** The account whose key `postOrder` and `getOrder` send by default (see `registerApiKey`). */
export const TEST_ACCOUNT = "tester";

/**
 * A real API key of `account` in the deployment's database, made by the key store as `orders keys
 * create` makes it (authentication is on by default, in the tests too).
 */
export async function createApiKey(
  env: Record<string, string>,
  account = TEST_ACCOUNT,
  label = "test",
): Promise<string> {
  const [token] = await createApiKeys(env, [account], label);
  return token!;
}

/** One key per account, over one connection (benchmarks make one account per client). */
export async function createApiKeys(
  env: Record<string, string>,
  accounts: string[],
  label = "test",
): Promise<string[]> {
  const client = new MongoClient(env.MONGO_URL!, { serverSelectionTimeoutMS: 10_000, maxPoolSize: 2 });
  try {
    const store = new MongoApiKeyStore(client.db(databaseName(env.MONGO_URL!)), { timeoutMs: 10_000 });
    const tokens: string[] = [];
    for (const account of accounts) tokens.push((await store.create({ account, label })).token);
    return tokens;
  } finally {
    await client.close();
  }
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}

type Target = { handle(request: Request): Promise<Response> } | string;

// The key each started API answers to by default: by base URL (real processes) or by the process object.
const defaultKeys = new Map<string, string>();
const defaultKeysOfApps = new WeakMap<object, string>();

/** Makes `token` the key postOrder/getOrder send to `target` unless the call names its own. */
export function registerApiKey(target: Target, token: string): void {
  if (typeof target === "string") defaultKeys.set(target, token);
  else defaultKeysOfApps.set(target, token);
}

/** The Authorization header of the key registered for `target` (none when none is registered). */
export function authorizationFor(target: Target): Record<string, string> {
  const token = typeof target === "string" ? defaultKeys.get(target) : defaultKeysOfApps.get(target);
  return token === undefined ? {} : bearer(token);
}

/** Whether this deployment's API asks for keys (it does unless the env turns authentication off). */
const authenticates = (env: Record<string, string>, kind: string) =>
  env.AUTH_MODE !== "off" && (kind === "api" || kind === "all");

/** The service in this process (`api`, `actors` or `all`), with a key of TEST_ACCOUNT registered. */
export async function startInProcess(
  env: Record<string, string>,
  kind: "api" | "actors" | "all" = "all",
): Promise<RunningProcess> {
  const running = await startService(configFrom(env), silentLogger, kind, startPlacementActors);
  if (authenticates(env, kind)) registerApiKey(running, await createApiKey(env));
  return running;
}

export async function startVenueInProcess(env: Record<string, string>): Promise<RunningProcess> {
  return startExchange(configFrom(env), silentLogger);
}

export interface ServiceProcess {
  process: OwnedProcess;
  port: number;
  /** The public port's URL (the API, the venue; unused by actors). */
  baseUrl: string;
  /** The operations port's URL: /health/live, /health/ready, /metrics. */
  opsUrl: string;
}

/**
 * A real process of `bun src/main.ts <kind>` (or `<binary> <kind>`) on `port` and `opsPort` (free
 * ones unless given), waited for until GET /health/live on its operations port answers 200 (every
 * process kind listens last, after its start-up), or failed with its output when it exits first. LOG_LEVEL defaults to warn: per-order info
 * logs would cost benchmarks CPU.
 */
export async function spawnService(
  kind: "api" | "actors" | "executions" | "gateway" | "all" | "exchange",
  env: Record<string, string>,
  options: { binary?: string; port?: number; opsPort?: number; name?: string; timeoutMs?: number } = {},
): Promise<ServiceProcess> {
  const port = options.port ?? (await freePort());
  const opsPort = options.opsPort ?? (await freePort());
  const name = options.name ?? kind;
  const cmd = options.binary ? [options.binary, kind] : ["bun", resolve(ROOT, "src/main.ts"), kind];
  const owned = spawnOwned(name, cmd, {
    env: { ...process.env, LOG_LEVEL: "warn", ...env, PORT: String(port), OPS_PORT: String(opsPort) },
    cwd: ROOT,
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const opsUrl = `http://127.0.0.1:${opsPort}`;
  const listening = waitFor(
    async () => (await fetch(`${opsUrl}/health/live`, { signal: AbortSignal.timeout(1_000) })).status === 200,
    { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50, message: `${name} listening on ${port}` },
  );
  const died = owned.exited.then((code) => {
    throw new Error(`${name} exited with ${code} before listening`);
  });
  try {
    await Promise.race([listening, died]);
  } catch (error) {
    owned.signal("SIGKILL");
    throw new Error(`${(error as Error).message}\n${owned.logs.slice(-4000)}`);
  } finally {
    died.catch(() => {});
    listening.catch(() => {});
  }
  if (authenticates(env, kind)) registerApiKey(baseUrl, await createApiKey(env));
  return { process: owned, port, baseUrl, opsUrl };
}

/** A MongoDB client on the test's database, for assertions. */
export function mongoFor(env: Record<string, string>) {
  const client = new MongoClient(env.MONGO_URL!, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 8 });
  const db = client.db(databaseName(env.MONGO_URL!));
  return { client, db, orders: db.collection<Record<string, unknown> & { _id: string }>("orders") };
}

export function orderBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: "market", side: "buy", instrument: "US0378331005", quantity: 1, ...overrides };
}

/** POST /orders with the target's registered key unless `headers` name an authorization of their own. */
export function postOrder(
  target: Target,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return send(target, "/orders", {
    method: "POST",
    headers: { "content-type": "application/json", ...authorizationFor(target), ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** GET `path` (/orders/ID, /orders?...) with the target's registered key unless `headers` name another. */
export function getPath(
  target: Target,
  path: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return send(target, path, { headers: { ...authorizationFor(target), ...headers } });
}

export function getOrder(
  target: Target,
  id: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return getPath(target, `/orders/${encodeURIComponent(id)}`, headers);
}

function send(target: Target, path: string, init: RequestInit): Promise<Response> {
  if (typeof target === "string") return fetch(`${target}${path}`, init);
  return target.handle(new Request(`http://localhost${path}`, init));
}
