/**
 * The served OpenAPI document is enough to write a typed client: openapi-typescript makes the types of
 * /swagger/json, a small openapi-fetch client written against them type-checks with the repository's
 * `tsc` (and what the contract forbids does not compile), and that client, run against the API over
 * HTTP with a Bearer key, places an order (201), reads it back (GET /orders/{id}) and lists it (GET /orders).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  createApiKey,
  getPath,
  isolatedEnv,
  mongoFor,
  ROOT,
  startInProcess,
  useServers,
} from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();

/**
 * The client a user of the API would write, against the generated types only. `check` is never run:
 * it holds what must not compile, each line marked `@ts-expect-error`, so that types degraded to `any`
 * or `unknown` (an unused `@ts-expect-error` is itself an error) fail the type-check.
 */
const CLIENT = `import createClient, { type Client as FetchClient } from "openapi-fetch";
import type { components, paths } from "./schema.ts";

export type Order = components["schemas"]["Order"];
export type OrderDetail = components["schemas"]["OrderDetail"];
type Client = FetchClient<paths>;

export function ordersClient(baseUrl: string, token: string): Client {
  return createClient<paths>({ baseUrl, headers: { Authorization: \`Bearer \${token}\` } });
}

export async function placeReadAndList(client: Client, idempotencyKey: string) {
  const placed = await client.POST("/orders", {
    body: { type: "limit", side: "buy", instrument: "US0378331005", limit_price: "10.50", quantity: 3 },
    params: { header: { "idempotency-key": idempotencyKey } },
  });
  if (!placed.data) throw new Error(\`POST /orders answered \${placed.response.status}\`);
  const order: Order = placed.data;
  const id: string = order.id;
  const price: number | null = order.limit_price;

  const read = await client.GET("/orders/{id}", { params: { path: { id } } });
  if (!read.data) throw new Error(\`GET /orders/{id} answered \${read.response.status}\`);
  const detail: OrderDetail = read.data;
  const attempts: number = detail.attempts;

  const listed = await client.GET("/orders", { params: { query: { status: "accepted" } } });
  if (!listed.data) throw new Error(\`GET /orders answered \${listed.response.status}\`);
  const ids: string[] = listed.data.orders.map((o) => o.id);
  const next: string | null = listed.data.next_cursor;

  const retried = await client.POST("/orders", {
    body: { type: "limit", side: "buy", instrument: "US0378331005", limit_price: 10.5, quantity: 3 },
    params: { header: { "idempotency-key": idempotencyKey } },
  });
  const unknown = await client.GET("/orders/{id}", { params: { path: { id: "01900000-0000-7000-8000-000000000000" } } });
  const notFound: string | undefined = unknown.error?.message;

  return {
    placed: { status: placed.response.status, order, price, location: placed.response.headers.get("location") },
    read: { status: read.response.status, detail, attempts },
    listed: { status: listed.response.status, ids, next },
    retried: {
      status: retried.response.status,
      id: retried.data?.id,
      replayed: retried.response.headers.get("idempotent-replayed"),
    },
    unknown: { status: unknown.response.status, message: notFound },
  };
}

export async function listWithLimit(client: Client, limit: number) {
  const { response, data } = await client.GET("/orders", { params: { query: { limit } } });
  return { status: response.status, count: data?.orders.length };
}

export async function refused(client: Client) {
  const { response, error } = await client.GET("/orders", {});
  const message: string | undefined = error?.message;
  return { status: response.status, message, challenge: response.headers.get("www-authenticate") };
}

export function check(client: Client): void {
  // @ts-expect-error "stop" is no order type
  void client.POST("/orders", { body: { type: "stop", side: "buy", instrument: "US0378331005", quantity: 1 } });
  // @ts-expect-error quantity is required
  void client.POST("/orders", { body: { type: "market", side: "buy", instrument: "US0378331005" } });
  // @ts-expect-error unknown fields are refused (additionalProperties: false)
  void client.POST("/orders", { body: { type: "market", side: "buy", instrument: "US0378331005", quantity: 1, note: "x" } });
  // @ts-expect-error quantity is an integer, not a string
  void client.POST("/orders", { body: { type: "market", side: "buy", instrument: "US0378331005", quantity: "1" } });
  // @ts-expect-error the list's status is one of the order statuses
  void client.GET("/orders", { params: { query: { status: "pending" } } });
  // @ts-expect-error GET /orders/{id} needs its id
  void client.GET("/orders/{id}", {});
  // @ts-expect-error there is no DELETE /orders/{id}
  void client.DELETE("/orders/{id}", { params: { path: { id: "x" } } });
}
`;

/** What client.ts exports, as this file sees it (its own types are the generated ones). */
interface ClientModule {
  ordersClient(baseUrl: string, token: string): object;
  placeReadAndList(
    client: object,
    idempotencyKey: string,
  ): Promise<{
    placed: {
      status: number;
      order: Record<string, unknown> & { id: string };
      price: number | null;
      location: string | null;
    };
    read: { status: number; detail: Record<string, unknown>; attempts: number };
    listed: { status: number; ids: string[]; next: string | null };
    retried: { status: number; id: string | undefined; replayed: string | null };
    unknown: { status: number; message: string | undefined };
  }>;
  listWithLimit(client: object, limit: number): Promise<{ status: number; count: number | undefined }>;
  refused(client: object): Promise<{ status: number; message: string | undefined; challenge: string | null }>;
}

const TSCONFIG = {
  compilerOptions: {
    target: "ESNext",
    module: "ESNext",
    moduleResolution: "bundler",
    lib: ["ESNext", "DOM"],
    types: [],
    strict: true,
    noUncheckedIndexedAccess: true,
    noEmit: true,
    allowImportingTsExtensions: true,
    verbatimModuleSyntax: true,
    // The generated schema.ts is checked; only the packages' own declarations are skipped.
    skipLibCheck: true,
  },
  files: ["schema.ts", "client.ts"],
};

async function run(command: string[], cwd = ROOT): Promise<{ code: number; output: string }> {
  const child = Bun.spawn(command, { cwd, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, output: `${stdout}${stderr}` };
}

describe("a typed client from the served OpenAPI document", () => {
  let app: RunningProcess;
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    env = isolatedEnv(servers);
    app = await startInProcess(env, "api");
    dir = mkdtempSync(join(tmpdir(), "orders-openapi-client-"));
    // The client's imports (openapi-fetch) resolve from the repository's packages.
    symlinkSync(resolve(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  });
  afterAll(async () => {
    await app?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("openapi-typescript generates the types, the client type-checks, and it places, reads and lists an order", async () => {
    const served = await app.handle(new Request("http://localhost/swagger/json"));
    expect(served.status).toBe(200);
    await Bun.write(join(dir, "openapi.json"), await served.text());

    const generated = await run([
      process.execPath,
      resolve(ROOT, "test/support/openapi-types.ts"),
      join(dir, "openapi.json"),
      join(dir, "schema.ts"),
    ]);
    expect(generated).toEqual({ code: 0, output: expect.any(String) });
    const types = await Bun.file(join(dir, "schema.ts")).text();
    expect(types).toContain('"/orders/{id}"');

    await Bun.write(join(dir, "client.ts"), CLIENT);
    await Bun.write(join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    const typeCheck = await run([
      resolve(ROOT, "node_modules/.bin/tsc"),
      "--noEmit",
      "-p",
      join(dir, "tsconfig.json"),
    ]);
    expect(typeCheck).toEqual({ code: 0, output: "" });

    const client = (await import(join(dir, "client.ts"))) as ClientModule;
    const baseUrl = `http://127.0.0.1:${app.port}`;
    const api = client.ordersClient(baseUrl, await createApiKey(env, "typed-client"));
    const result = await client.placeReadAndList(api, "typed-client-1");

    expect(result.placed).toMatchObject({ status: 201, price: 10.5 });
    expect(result.placed.order).toMatchObject({
      type: "limit",
      side: "buy",
      instrument: "US0378331005",
      limit_price: 10.5,
      quantity: 3,
      status: "accepted",
    });
    const id = result.placed.order.id;
    expect(result.placed.location).toBe(`/orders/${id}`);
    expect(result.read).toMatchObject({ status: 200, attempts: 0 });
    expect(result.read.detail).toMatchObject({ ...result.placed.order, placed_at: null, executions: [] });
    expect(result.listed).toEqual({ status: 200, ids: [id], next: null });
    expect(result.retried).toEqual({ status: 201, id, replayed: "true" });
    expect(result.unknown).toEqual({ status: 404, message: "Order not found" });

    const mongo = mongoFor(env);
    try {
      expect(await mongo.orders.countDocuments({ account: "typed-client" })).toBe(1);
    } finally {
      await mongo.client.close();
    }

    const anonymous = client.ordersClient(baseUrl, "not-a-key");
    expect(await client.refused(anonymous)).toMatchObject({
      status: 401,
      challenge: expect.stringMatching(/^Bearer/),
    });
  });

  // Found by this test: the query string "10" was validated against an integer schema without being
  // converted, so every limit was refused (the query schema now uses Elysia's converting t.Integer).
  test("GET /orders?limit=10, as the document describes it, is answered 200", async () => {
    const response = await getPath(app, "/orders?limit=10");
    expect({ status: response.status, body: await response.json() }).toEqual({
      status: 200,
      body: { orders: [], next_cursor: null },
    });
  });
});
