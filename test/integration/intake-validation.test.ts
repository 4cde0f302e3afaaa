/**
 * POST /orders refuses every body that breaks a rule of docs/CONTRACT.md with a 4xx that names the bad
 * field(s), and stores nothing: checked against real Redis and MongoDB-wire servers (the controller
 * alone, without servers, is test/unit/validation.test.ts).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  authorizationFor,
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  startInProcess,
  useServers,
} from "../support/system.ts";

// Real servers and fault injection take longer than bun's 5 s default (bunfig's timeout is not applied).
setDefaultTimeout(60_000);

const servers = useServers();

// One API for the file (a refused request changes nothing, so they need no fresh deployment each);
// "nothing stored" compares with the counts taken before each test.
let app: RunningProcess;
let mongo: ReturnType<typeof mongoFor>;
let before = { orders: 0, keys: 0 };
beforeAll(async () => {
  const env = isolatedEnv(servers);
  mongo = mongoFor(env);
  app = await startInProcess(env, "api");
});
afterAll(async () => {
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});
beforeEach(async () => {
  before = await storedCounts();
});

async function storedCounts() {
  return {
    orders: await mongo.orders.countDocuments(),
    keys: await mongo.db.collection("idempotency_keys").countDocuments(),
  };
}

interface ErrorBody {
  message: string;
  errors: { field: string; message: string }[];
}

/** The answer is `status` with the documented error shape naming exactly `fields`, and nothing is stored. */
async function expectRejected(response: Response, status: number, fields: string[]) {
  const text = await response.text();
  expect({ status: response.status, text }).toMatchObject({ status });
  const body = JSON.parse(text) as ErrorBody;
  expect(typeof body.message).toBe("string");
  expect(body.message.length).toBeGreaterThan(0);
  expect(Array.isArray(body.errors)).toBe(true);
  for (const error of body.errors) {
    expect(typeof error.message).toBe("string");
    expect(error.message.length).toBeGreaterThan(0);
  }
  expect(body.errors.map((e) => e.field).sort()).toEqual([...fields].sort());
  await expectNothingStored();
  return body;
}

async function expectNothingStored() {
  expect(await storedCounts()).toEqual(before);
}

const limit = (overrides: Record<string, unknown> = {}) =>
  orderBody({ type: "limit", limit_price: 10, ...overrides });
const without = (field: string, body: Record<string, unknown>) => {
  const copy = { ...body };
  delete copy[field];
  return copy;
};

describe("422 for every rule of the order body, naming the field, nothing stored", () => {
  const cases: [string, unknown, string[]][] = [
    ["type missing", without("type", orderBody()), ["type"]],
    ["type not market/limit", orderBody({ type: "stop" }), ["type"]],
    ["type not a string", orderBody({ type: 1 }), ["type"]],
    ["type in another case", orderBody({ type: "MARKET" }), ["type"]],
    ["side missing", without("side", orderBody()), ["side"]],
    ["side not buy/sell", orderBody({ side: "hold" }), ["side"]],
    ["side not a string", orderBody({ side: true }), ["side"]],
    ["instrument missing", without("instrument", orderBody()), ["instrument"]],
    ["instrument of 11 characters", orderBody({ instrument: "US037833100" }), ["instrument"]],
    ["instrument of 13 characters", orderBody({ instrument: "US03783310055" }), ["instrument"]],
    ["instrument empty", orderBody({ instrument: "" }), ["instrument"]],
    ["instrument a number", orderBody({ instrument: 123456789012 }), ["instrument"]],
    ["instrument null", orderBody({ instrument: null }), ["instrument"]],
    ["quantity missing", without("quantity", orderBody()), ["quantity"]],
    ["quantity 0", orderBody({ quantity: 0 }), ["quantity"]],
    ["quantity -1", orderBody({ quantity: -1 }), ["quantity"]],
    ["quantity 1.5", orderBody({ quantity: 1.5 }), ["quantity"]],
    ['quantity "5" (a string)', orderBody({ quantity: "5" }), ["quantity"]],
    ["quantity 2^53", orderBody({ quantity: 2 ** 53 }), ["quantity"]],
    ["quantity 1e300", orderBody({ quantity: 1e300 }), ["quantity"]],
    ["quantity null", orderBody({ quantity: null }), ["quantity"]],
    ["limit_price missing for a limit order", without("limit_price", limit()), ["limit_price"]],
    ["limit_price null for a limit order", limit({ limit_price: null }), ["limit_price"]],
    ["limit_price (number) on a market order", orderBody({ limit_price: 10 }), ["limit_price"]],
    ["limit_price (string) on a market order", orderBody({ limit_price: "10.50" }), ["limit_price"]],
    ["limit_price 0", limit({ limit_price: 0 }), ["limit_price"]],
    ['limit_price "0.00"', limit({ limit_price: "0.00" }), ["limit_price"]],
    ["limit_price negative", limit({ limit_price: -1 }), ["limit_price"]],
    ["limit_price negative string", limit({ limit_price: "-1.00" }), ["limit_price"]],
    ["limit_price with 3 decimals (number 1.234)", limit({ limit_price: 1.234 }), ["limit_price"]],
    ['limit_price with 3 decimals (string "1.234")', limit({ limit_price: "1.234" }), ["limit_price"]],
    ["limit_price a non-numeric string", limit({ limit_price: "ten" }), ["limit_price"]],
    ["limit_price an empty string", limit({ limit_price: "" }), ["limit_price"]],
    ['limit_price in exponent notation ("1e2")', limit({ limit_price: "1e2" }), ["limit_price"]],
    ["limit_price a boolean", limit({ limit_price: true }), ["limit_price"]],
    ["limit_price an object", limit({ limit_price: { amount: 10 } }), ["limit_price"]],
    ["limit_price too large for exact cents", limit({ limit_price: 1e300 }), ["limit_price"]],
    ["an unknown field", orderBody({ account: "A1" }), ["account"]],
    ["a misspelled field", { ...without("quantity", orderBody()), qty: 1 }, ["qty", "quantity"]],
  ];

  test.each(cases)("%s", async (_name, body, fields) => {
    await expectRejected(await postOrder(app, body), 422, fields);
  });

  test("several errors at once are all named", async () => {
    const body = { type: "stop", side: "hold", instrument: "XX", quantity: 0, colour: "red" };
    const answer = await expectRejected(await postOrder(app, body), 422, [
      "type",
      "side",
      "instrument",
      "quantity",
      "colour",
    ]);
    // Plain words, not a framework's raw union errors.
    for (const error of answer.errors) expect(error.message).not.toMatch(/anyOf|union|schema/i);
  });

  test("a limit order with every field wrong but the price names the price too", async () => {
    await expectRejected(
      await postOrder(app, { type: "limit", side: "up", instrument: 1, quantity: -5, limit_price: "1.234" }),
      422,
      ["side", "instrument", "quantity", "limit_price"],
    );
  });
});

describe("4xx for a body that is not an order object, nothing stored", () => {
  test("malformed JSON: 422", async () => {
    await expectRejected(await postOrder(app, '{"type": "market", '), 422, ["body"]);
  });

  test("an empty body: 422", async () => {
    await expectRejected(await postOrder(app, ""), 422, ["body"]);
  });

  test("a JSON array: 422", async () => {
    await expectRejected(await postOrder(app, [orderBody()]), 422, ["body"]);
  });

  test("JSON null: 422", async () => {
    await expectRejected(await postOrder(app, null), 422, ["body"]);
  });

  test("a JSON string: 422", async () => {
    await expectRejected(await postOrder(app, JSON.stringify("market buy")), 422, ["body"]);
  });

  test("a JSON number: 422", async () => {
    await expectRejected(await postOrder(app, "42"), 422, ["body"]);
  });

  test("invalid UTF-8: 422", async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"type":"'), 0xff, 0xfe, 0x22, 0x7d]);
    const response = await app.handle(
      new Request("http://localhost/orders", {
        method: "POST",
        headers: { "content-type": "application/json", ...authorizationFor(app) },
        body: bytes,
      }),
    );
    await expectRejected(response, 422, ["body"]);
  });

  test("a wrong content type: 415", async () => {
    await expectRejected(
      await postOrder(app, JSON.stringify(orderBody()), { "content-type": "text/plain" }),
      415,
      ["content-type"],
    );
  });

  test("a form-encoded body: 415", async () => {
    await expectRejected(
      await postOrder(app, "type=market&side=buy", { "content-type": "application/x-www-form-urlencoded" }),
      415,
      ["content-type"],
    );
  });

  test("no content type at all: 415", async () => {
    const response = await app.handle(
      new Request("http://localhost/orders", {
        method: "POST",
        headers: authorizationFor(app),
        body: new Blob([JSON.stringify(orderBody())]),
      }),
    );
    await expectRejected(response, 415, ["content-type"]);
  });

  test("application/json with a charset is accepted", async () => {
    const response = await postOrder(app, orderBody(), { "content-type": "application/json; charset=utf-8" });
    expect(response.status).toBe(201);
  });

  test("a body over 16 KiB: 413", async () => {
    const body = JSON.stringify(orderBody({ note: "x".repeat(17 * 1024) }));
    expect(body.length).toBeGreaterThan(16 * 1024);
    await expectRejected(await postOrder(app, body), 413, ["body"]);
  });

  test("a body over 16 KiB sent without a content-length (streamed): 413", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode(JSON.stringify(orderBody())));
        if (sent++ > 20) return controller.close();
        controller.enqueue(chunk);
      },
    });
    const response = await app.handle(
      new Request("http://localhost/orders", {
        method: "POST",
        headers: { "content-type": "application/json", ...authorizationFor(app) },
        body: stream,
      }),
    );
    await expectRejected(response, 413, ["body"]);
  });

  test("a body of exactly 16 KiB is still read (and then judged on its content)", async () => {
    const base = JSON.stringify(orderBody());
    const body = base + " ".repeat(16 * 1024 - base.length);
    expect(body.length).toBe(16 * 1024);
    expect((await postOrder(app, body)).status).toBe(201);
  });
});

describe("a bad Idempotency-Key is refused with 422 and nothing stored", () => {
  test("256 characters", async () => {
    await expectRejected(await postOrder(app, orderBody(), { "idempotency-key": "k".repeat(256) }), 422, [
      "Idempotency-Key",
    ]);
  });

  test("a space inside", async () => {
    await expectRejected(await postOrder(app, orderBody(), { "idempotency-key": "order 1" }), 422, [
      "Idempotency-Key",
    ]);
  });

  test("a non-ASCII character", async () => {
    await expectRejected(await postOrder(app, orderBody(), { "idempotency-key": "commande-é" }), 422, [
      "Idempotency-Key",
    ]);
  });

  test("a valid body does not rescue a bad key, and a bad body with a good key stores no key", async () => {
    await expectRejected(await postOrder(app, orderBody(), { "idempotency-key": "tab\there" }), 422, [
      "Idempotency-Key",
    ]);
    await expectRejected(
      await postOrder(app, orderBody({ quantity: 0 }), { "idempotency-key": "good-key" }),
      422,
      ["quantity"],
    );
  });

  test("255 printable ASCII characters are accepted", async () => {
    const key = `${"!~".repeat(127)}z`;
    expect(key.length).toBe(255);
    const response = await postOrder(app, orderBody(), { "idempotency-key": key });
    expect(response.status).toBe(201);
    expect((await storedCounts()).orders).toBe(before.orders + 1);
  });
});

describe("the market/limit price rule, both ways", () => {
  test("a market order without limit_price, and with limit_price null, is accepted with limit_price null", async () => {
    const ids: string[] = [];
    for (const body of [orderBody(), orderBody({ limit_price: null })]) {
      const response = await postOrder(app, body);
      expect(response.status).toBe(201);
      const answer = (await response.json()) as { id: string; limit_price: unknown };
      expect(answer.limit_price).toBeNull();
      ids.push(answer.id);
    }
    const stored = await mongo.orders.find({ _id: { $in: ids } }).toArray();
    expect(stored.map((o) => o.limit_price_cents)).toEqual([null, null]);
  });

  test("a limit order with a price is accepted", async () => {
    const response = await postOrder(app, limit({ limit_price: 12.5, side: "sell" }));
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ type: "limit", side: "sell", limit_price: 12.5 });
  });
});
