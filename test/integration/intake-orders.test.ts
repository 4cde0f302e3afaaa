/**
 * Accepted orders: exact money through POST, storage (int64 cents) and GET; GET for known and unknown
 * ids, before and after placement; and the OpenAPI document describing what the service really answers.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import type { OrderRequest } from "../../src/orders/model.ts";
import { hashDraft, scopedIdempotencyKey } from "../../src/orders/service.ts";
import { toDraft } from "../../src/orders/validation.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  getOrder,
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  startInProcess,
  TEST_ACCOUNT,
  useServers,
} from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

// Real servers and fault injection take longer than bun's 5 s default (bunfig's timeout is not applied).
setDefaultTimeout(60_000);

const servers = useServers();

let env: Record<string, string>;
let mongo: ReturnType<typeof mongoFor>;
const running: RunningProcess[] = [];
beforeEach(() => {
  env = isolatedEnv(servers, { SWEEP_INTERVAL_MS: "200", SHUTDOWN_DEADLINE_MS: "2000" });
  mongo = mongoFor(env);
});
afterEach(async () => {
  await Promise.allSettled([...running.splice(0).map((app) => app.close()), mongo?.client.close()]);
});

async function start(kind: "api" | "all" = "api"): Promise<RunningProcess> {
  const app = await startInProcess(env, kind);
  running.push(app);
  return app;
}

interface OrderAnswer {
  id: string;
  created_at: string;
  type: string;
  side: string;
  instrument: string;
  limit_price: number | null;
  quantity: number;
  status: string;
  attempts?: number;
  placed_at?: string | null;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("exact decimals round-trip through POST, MongoDB (int64 cents) and GET", () => {
  const cases: [unknown, number, number, string][] = [
    [0.1, 0.1, 10, '"limit_price":0.1,'],
    [19.99, 19.99, 1999, '"limit_price":19.99,'],
    [1000000.01, 1000000.01, 100000001, '"limit_price":1000000.01,'],
    ["10.50", 10.5, 1050, '"limit_price":10.5,'],
    ["0.01", 0.01, 1, '"limit_price":0.01,'],
    [1.1, 1.1, 110, '"limit_price":1.1,'],
  ];

  test.each(cases)(
    "limit_price %p is answered as %p and stored as %p cents",
    async (sent, shown, cents, jsonFragment) => {
      const app = await start();
      const posted = await postOrder(app, orderBody({ type: "limit", limit_price: sent }));
      expect(posted.status).toBe(201);
      const postText = await posted.text();
      expect(postText).toContain(jsonFragment);
      const order = JSON.parse(postText) as OrderAnswer;
      expect(order.limit_price).toBe(shown);

      const stored = await mongo.orders.findOne({ _id: order.id });
      expect(stored?.limit_price_cents).toBe(cents);
      // int64 in BSON, never a double: the server itself says so.
      expect(await mongo.orders.countDocuments({ _id: order.id, limit_price_cents: { $type: "long" } })).toBe(
        1,
      );

      const fetched = await getOrder(app, order.id);
      expect(fetched.status).toBe(200);
      const getText = await fetched.text();
      expect(getText).toContain(jsonFragment);
      expect((JSON.parse(getText) as OrderAnswer).limit_price).toBe(shown);
    },
  );

  test("the 201 body is the order per docs/CONTRACT.md, and the stored document matches it", async () => {
    const app = await start();
    const before = Date.now();
    const posted = await postOrder(app, {
      type: "limit",
      side: "sell",
      instrument: "DE0007164600",
      limit_price: "123.45",
      quantity: 2 ** 53 - 1,
    });
    expect(posted.status).toBe(201);
    const order = (await posted.json()) as OrderAnswer;
    expect(Object.keys(order).sort()).toEqual(
      ["created_at", "id", "instrument", "limit_price", "quantity", "side", "status", "type"].sort(),
    );
    expect(order).toMatchObject({
      type: "limit",
      side: "sell",
      instrument: "DE0007164600",
      limit_price: 123.45,
      quantity: 2 ** 53 - 1,
      status: "accepted",
    });
    expect(order.id).toMatch(UUID);
    expect(order.created_at).toMatch(ISO_UTC);
    expect(Date.parse(order.created_at)).toBeGreaterThanOrEqual(before - 1_000);
    expect(posted.headers.get("location")).toBe(`/orders/${order.id}`);

    const stored = await mongo.orders.findOne({ _id: order.id });
    expect(stored).toMatchObject({
      type: "limit",
      side: "sell",
      instrument: "DE0007164600",
      limit_price_cents: 12345,
      quantity: 2 ** 53 - 1,
      status: "accepted",
      attempts: 0,
    });
    expect((stored!.created_at as Date).toISOString()).toBe(order.created_at);
  });
});

describe("GET /orders/{id}", () => {
  test("200 with the placement state for a known id: accepted before any actor ran", async () => {
    const app = await start("api");
    const order = (await (await postOrder(app, orderBody({ quantity: 7 }))).json()) as OrderAnswer;
    const response = await getOrder(app, order.id);
    expect(response.status).toBe(200);
    const detail = (await response.json()) as OrderAnswer;
    expect(detail).toMatchObject({ ...order, status: "accepted", attempts: 0, placed_at: null });
  });

  test("200 with status placed, attempts and placed_at once the actors placed it", async () => {
    const app = await start("all");
    const posted = await postOrder(app, orderBody({ type: "limit", limit_price: "19.99", side: "sell" }));
    expect(posted.status).toBe(201);
    const order = (await posted.json()) as OrderAnswer;
    const placed = await waitFor(
      async () => {
        const detail = (await (await getOrder(app, order.id)).json()) as OrderAnswer;
        return detail.status === "placed" ? detail : null;
      },
      { timeoutMs: 30_000, message: "order placed" },
    );
    expect(placed).toMatchObject({
      id: order.id,
      created_at: order.created_at,
      type: "limit",
      side: "sell",
      limit_price: 19.99,
      status: "placed",
    });
    expect(placed.attempts).toBeGreaterThanOrEqual(1);
    expect(placed.placed_at).toMatch(ISO_UTC);
    expect(Date.parse(placed.placed_at!)).toBeGreaterThanOrEqual(Date.parse(order.created_at));
  });

  test.each([
    ["an unknown UUID", "01900000-0000-7000-8000-000000000000"],
    ["a malformed id", "not-an-order"],
    ["an id with URL-encoded characters", "a b/c?d"],
  ])("404 with the exact body for %s", async (_name, id) => {
    const app = await start("api");
    await postOrder(app, orderBody());
    const response = await getOrder(app, id);
    expect(response.status).toBe(404);
    expect(await response.text()).toBe(JSON.stringify({ message: "Order not found" }));
  });
});

describe("OpenAPI document and Swagger UI", () => {
  interface Operation {
    requestBody?: {
      content: Record<string, { schema: Schema }>;
    };
    responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
  }
  interface Schema {
    $ref?: string;
    examples?: unknown[];
    type?: string;
    properties?: Record<string, Schema>;
    required?: string[];
    additionalProperties?: boolean;
    items?: Schema;
    anyOf?: Schema[];
  }

  interface Document {
    openapi: string;
    paths: Record<string, Record<string, Operation>>;
    components?: { schemas?: Record<string, Schema> };
  }

  /** The document with every `$ref` to a named model replaced by the model (and the models' `$id`s dropped). */
  async function openApi(app: RunningProcess): Promise<Document> {
    const response = await app.handle(new Request("http://localhost/swagger/json"));
    expect(response.status).toBe(200);
    const document = (await response.json()) as Document;
    const models = document.components?.schemas ?? {};
    const inline = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(inline);
      if (typeof value !== "object" || value === null) return value;
      const { $ref, $id: _, ...rest } = value as Record<string, unknown>;
      if (typeof $ref === "string") return inline(models[$ref.replace("#/components/schemas/", "")]);
      return Object.fromEntries(Object.entries(rest).map(([key, v]) => [key, inline(v)]));
    };
    return { ...document, paths: inline(document.paths) as Document["paths"] };
  }

  const jsonSchema = (operation: Operation | undefined, status: string) =>
    operation?.responses[status]?.content?.["application/json"]?.schema;

  test("POST /orders: request schema, a market and a limit example, 201/409/422/500 with their shapes", async () => {
    const app = await start();
    const document = await openApi(app);
    expect(document.openapi).toMatch(/^3\./);
    const post = document.paths["/orders"]?.post;
    expect(post).toBeDefined();

    const body = post?.requestBody?.content["application/json"];
    expect(body?.schema.type).toBe("object");
    expect(body?.schema.additionalProperties).toBe(false);
    expect(Object.keys(body?.schema.properties ?? {}).sort()).toEqual(
      ["instrument", "limit_price", "quantity", "side", "type"].sort(),
    );
    expect(body?.schema.required?.sort()).toEqual(["instrument", "quantity", "side", "type"].sort());
    const examples = (body?.schema.examples ?? []) as Record<string, unknown>[];
    const market = examples.find((e) => e.type === "market");
    const limitExample = examples.find((e) => e.type === "limit");
    expect(market).toBeDefined();
    expect(limitExample?.limit_price).toBeDefined();

    for (const status of ["201", "409", "422", "500"]) {
      expect(post?.responses[status]?.description).toBeTruthy();
      expect(jsonSchema(post, status)?.type).toBe("object");
    }
    expect(Object.keys(jsonSchema(post, "201")?.properties ?? {})).toEqual(
      expect.arrayContaining([
        "id",
        "created_at",
        "type",
        "side",
        "instrument",
        "limit_price",
        "quantity",
        "status",
      ]),
    );
    const invalid = jsonSchema(post, "422");
    expect(Object.keys(invalid?.properties ?? {}).sort()).toEqual(["errors", "message"]);
    expect(Object.keys(invalid?.properties?.errors?.items?.properties ?? {}).sort()).toEqual([
      "field",
      "message",
    ]);
    expect(Object.keys(jsonSchema(post, "409")?.properties ?? {})).toEqual(["message"]);
    expect(Object.keys(jsonSchema(post, "500")?.properties ?? {})).toEqual(["message"]);
    expect(post?.responses["500"]?.description).toContain("Internal server error while placing the order");
  });

  test("the examples are accepted by the service itself", async () => {
    const app = await start();
    const post = (await openApi(app)).paths["/orders"]?.post;
    const examples = post?.requestBody?.content["application/json"]?.schema.examples ?? [];
    expect(examples.length).toBeGreaterThanOrEqual(2);
    for (const example of examples) expect((await postOrder(app, example)).status).toBe(201);
  });

  test("GET /orders/{id}: 200 with the order and its placement state, 404", async () => {
    const app = await start();
    const get = (await openApi(app)).paths["/orders/{id}"]?.get;
    expect(get).toBeDefined();
    expect(Object.keys(jsonSchema(get, "200")?.properties ?? {})).toEqual(
      expect.arrayContaining(["id", "status", "attempts", "placed_at", "limit_price"]),
    );
    expect(Object.keys(jsonSchema(get, "404")?.properties ?? {})).toEqual(["message"]);
  });

  test("every answer the service really gives matches the schema documented for its status", async () => {
    const app = await start();
    const paths = (await openApi(app)).paths;
    const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
    addFormats(ajv);
    const check = async (operation: Operation | undefined, response: Response) => {
      const schema = jsonSchema(operation, String(response.status));
      expect({ status: response.status, documented: schema !== undefined }).toEqual({
        status: response.status,
        documented: true,
      });
      const validate = ajv.compile(schema as object);
      const body = await response.json();
      expect({ status: response.status, body, errors: validate(body) ? null : validate.errors }).toEqual({
        status: response.status,
        body,
        errors: null,
      });
    };
    const post = paths["/orders"]?.post;
    const get = paths["/orders/{id}"]?.get;
    const body = orderBody({ type: "limit", limit_price: "10.50" });

    const created = await postOrder(app, body, { "idempotency-key": "documented" });
    const { id } = (await created.clone().json()) as { id: string };
    await check(post, created);
    await check(post, await postOrder(app, body, { "idempotency-key": "documented" }));
    await check(post, await postOrder(app, orderBody({ quantity: 0, type: "stop" })));
    await check(post, await postOrder(app, "{"));
    await check(post, await postOrder(app, orderBody({ quantity: 2 }), { "idempotency-key": "documented" }));
    await check(post, await postOrder(app, JSON.stringify(body), { "content-type": "text/plain" }));
    await check(post, await postOrder(app, JSON.stringify({ ...body, pad: "x".repeat(20_000) })));
    // 409: a first request with this key still in flight.
    await mongo.db.collection("idempotency_keys").insertOne({
      _id: scopedIdempotencyKey(TEST_ACCOUNT, "in-flight") as never,
      request_hash: hashDraft(toDraft(body as OrderRequest)),
      order_id: Bun.randomUUIDv7(),
      claimed_at: new Date(),
      expires_at: new Date(Date.now() + 3_600_000),
    });
    const conflict = await postOrder(app, body, { "idempotency-key": "in-flight" });
    expect(conflict.status).toBe(409);
    await check(post, conflict);

    await check(get, await getOrder(app, id));
    await check(get, await getOrder(app, "01900000-0000-7000-8000-000000000000"));
  });

  test("GET /swagger serves the UI as HTML", async () => {
    const app = await start();
    const response = await app.handle(new Request("http://localhost/swagger"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    expect(await response.text()).toContain("<html");
  });
});
