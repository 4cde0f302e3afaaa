/**
 * Who may do what on /orders (GitHub issue #12): without a key, with a malformed, unknown or revoked
 * one, every route answers 401 with a Bearer challenge (RFC 6750) and does nothing; an account sees
 * only its own orders (another account's id is as unknown as a missing one, and absent from its list);
 * Idempotency-Keys are each account's own. Through the in-process API (`app.handle`) with real keys.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { MongoClient } from "mongodb";
import { MongoApiKeyStore } from "../../src/adapters/mongo/api-key-store.ts";
import { databaseName } from "../../src/config.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  bearer,
  createApiKey,
  getOrder,
  getPath,
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  startInProcess,
  TEST_ACCOUNT,
  useServers,
} from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(60_000);

const servers = useServers();

/** Revocation reaches the API within the authenticator's cache time: short here, so the test is quick. */
const AUTH_CACHE_TTL_MS = 200;

let env: Record<string, string>;
let app: RunningProcess;
let mongo: ReturnType<typeof mongoFor>;
beforeEach(async () => {
  env = isolatedEnv(servers, { AUTH_CACHE_TTL_MS: String(AUTH_CACHE_TTL_MS) });
  app = await startInProcess(env, "api");
  mongo = mongoFor(env);
});
afterEach(async () => {
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});

type Call = (headers: Record<string, string>) => Promise<Response>;

/** A request with exactly these headers (no registered key added). */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Response> {
  return app.handle(new Request(`http://localhost${path}`, { method, headers, body }));
}

/** Every /orders route, sent with exactly the headers given. */
function routes(orderId = "01900000-0000-7000-8000-000000000000"): [string, Call][] {
  const json = { "content-type": "application/json" };
  return [
    [
      "POST /orders",
      (headers) => send("POST", "/orders", { ...json, ...headers }, JSON.stringify(orderBody())),
    ],
    ["GET /orders", (headers) => send("GET", "/orders", headers)],
    ["GET /orders/{id}", (headers) => send("GET", `/orders/${orderId}`, headers)],
  ];
}

async function expectUnauthenticated(response: Response, challenge: RegExp): Promise<void> {
  expect(response.status).toBe(401);
  expect(response.headers.get("www-authenticate")).toMatch(challenge);
  const body = (await response.json()) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(["message"]);
  expect(typeof body.message).toBe("string");
}

const MISSING = /^Bearer realm="orders"$/;
const INVALID = /^Bearer realm="orders", error="invalid_token"/;

describe("no key, malformed, unknown and revoked keys: 401 with a Bearer challenge, nothing done", () => {
  test("no Authorization header on every route", async () => {
    for (const [, call] of routes()) await expectUnauthenticated(await call({}), MISSING);
    expect(await mongo.orders.countDocuments({})).toBe(0);
  });

  test.each([
    ["the scheme alone", "Bearer"],
    ["an empty token", "Bearer    "],
    ["another scheme", "Basic dXNlcjpwYXNz"],
    ["a token with characters no token has", "Bearer ok_abc!def"],
    ["two tokens", "Bearer ok_aaaaaaaaaaaa_b ok_cccccccccccc_d"],
    ["a token far too long", `Bearer ${"a".repeat(300)}`],
    ["the token without its scheme", "ok_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
  ])("a malformed header (%s) on every route", async (_name, authorization) => {
    for (const [, call] of routes())
      await expectUnauthenticated(await call({ authorization }), /^Bearer realm="orders"/);
    expect(await mongo.orders.countDocuments({})).toBe(0);
  });

  test("a well-formed key that does not exist, on every route", async () => {
    const unknown = `ok_0123456789ab_${"A".repeat(43)}`;
    for (const [, call] of routes()) await expectUnauthenticated(await call(bearer(unknown)), INVALID);
    expect(await mongo.orders.countDocuments({})).toBe(0);
  });

  test("the scheme is case-insensitive (RFC 7235): `bearer` works like `Bearer`", async () => {
    const token = await createApiKey(env, "lowercase");
    expect((await postOrder(app, orderBody(), { authorization: `bearer ${token}` })).status).toBe(201);
  });

  test(`a revoked key is refused within AUTH_CACHE_TTL_MS (${AUTH_CACHE_TTL_MS} ms here)`, async () => {
    const client = new MongoClient(env.MONGO_URL!, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 2 });
    try {
      const store = new MongoApiKeyStore(client.db(databaseName(env.MONGO_URL!)), { timeoutMs: 5_000 });
      const { key, token } = await store.create({ account: "revoked-account", label: "to revoke" });
      const created = await postOrder(app, orderBody(), bearer(token));
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };

      expect(await store.revoke(key.id)).toBe("revoked");
      const revokedAt = Date.now();
      await waitFor(async () => (await getPath(app, "/orders", bearer(token))).status === 401, {
        timeoutMs: AUTH_CACHE_TTL_MS + 5_000,
        intervalMs: 20,
        message: "the revoked key refused",
      });
      // Within the cache time, plus the look-up and this machine's scheduling.
      expect(Date.now() - revokedAt).toBeLessThan(AUTH_CACHE_TTL_MS + 2_000);

      for (const [, call] of routes(id)) await expectUnauthenticated(await call(bearer(token)), INVALID);
      expect(await mongo.orders.countDocuments({ account: "revoked-account" })).toBe(1);
    } finally {
      await client.close();
    }
  });

  test("without a key, an invalid order is 401, not 422: the caller learns nothing of the rules", async () => {
    const body = JSON.stringify({ type: "stop", quantity: -1 });
    await expectUnauthenticated(
      await send("POST", "/orders", { "content-type": "application/json" }, body),
      MISSING,
    );
  });

  // Found by this test: the body used to be read and parsed before the caller was authenticated (Elysia
  // parses before a derive runs), so a stranger's unreadable body got 422/415/413. The route's parser now
  // authenticates first.
  test("without a key, a body that is not JSON, not JSON-typed or too large is 401", async () => {
    const post = (contentType: string, body: string) =>
      send("POST", "/orders", { "content-type": contentType }, body);
    await expectUnauthenticated(await post("application/json", "{"), MISSING);
    await expectUnauthenticated(await post("text/plain", "hello"), MISSING);
    await expectUnauthenticated(await post("application/json", " ".repeat(20_000)), MISSING);
  });
});

describe("accounts are isolated", () => {
  test("another account's order is 404 by id and absent from its list", async () => {
    const mine = await postOrder(app, orderBody({ quantity: 3 }));
    expect(mine.status).toBe(201);
    const { id } = (await mine.json()) as { id: string };
    const other = bearer(await createApiKey(env, "account-b"));

    const foreign = await getOrder(app, id, other);
    expect(foreign.status).toBe(404);
    expect(await foreign.text()).toBe(JSON.stringify({ message: "Order not found" }));

    const listOf = async (headers: Record<string, string> = {}, query = "") => {
      const response = await getPath(app, `/orders${query}`, headers);
      expect(response.status).toBe(200);
      return ((await response.json()) as { orders: { id: string }[] }).orders.map((order) => order.id);
    };
    expect(await listOf(other)).toEqual([]);
    expect(await listOf(other, "?status=accepted")).toEqual([]);
    // A cursor naming another account's order pages the caller's own orders only.
    expect(await listOf(other, `?cursor=${id}`)).toEqual([]);
    expect(await listOf()).toEqual([id]);
    // Its own order is found by its owner.
    expect((await getOrder(app, id)).status).toBe(200);
  });

  test("one Idempotency-Key and one body from two accounts: two orders, each replayed to its own account", async () => {
    const other = bearer(await createApiKey(env, "account-b"));
    const key = { "idempotency-key": "shared-key-1" };
    const body = orderBody({ type: "limit", limit_price: "10.50" });

    const first = await postOrder(app, body, key);
    const second = await postOrder(app, body, { ...other, ...key });
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    expect(second.headers.get("idempotent-replayed")).toBeNull();
    const mine = (await first.json()) as { id: string };
    const theirs = (await second.json()) as { id: string };
    expect(mine.id).not.toBe(theirs.id);

    const stored = await mongo.orders.find({}, { projection: { account: 1 } }).toArray();
    expect(stored.map((doc) => [doc._id, doc.account]).sort()).toEqual(
      [
        [mine.id, TEST_ACCOUNT],
        [theirs.id, "account-b"],
      ].sort(),
    );

    // Each account's retry is its own replay.
    const myRetry = await postOrder(app, body, key);
    const theirRetry = await postOrder(app, body, { ...other, ...key });
    expect(myRetry.headers.get("idempotent-replayed")).toBe("true");
    expect(theirRetry.headers.get("idempotent-replayed")).toBe("true");
    expect(((await myRetry.json()) as { id: string }).id).toBe(mine.id);
    expect(((await theirRetry.json()) as { id: string }).id).toBe(theirs.id);

    // A third account may use the key for another order: not a reuse, since the key is not its.
    const third = await postOrder(app, orderBody({ quantity: 9 }), {
      ...bearer(await createApiKey(env, "c")),
      ...key,
    });
    expect(third.status).toBe(201);
    expect(await mongo.orders.countDocuments({})).toBe(3);
  });
});
