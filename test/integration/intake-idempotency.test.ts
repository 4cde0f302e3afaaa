/**
 * Idempotency-Key (docs/CONTRACT.md): a retry with the same key and body gets the first order again, another
 * body gets 422, a concurrent retry gets 409, and however the requests race there is one order.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { OrderRequest } from "../../src/orders/model.ts";
import { hashDraft, scopedIdempotencyKey } from "../../src/orders/service.ts";
import { toDraft } from "../../src/orders/validation.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
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

let app: RunningProcess;
let mongo: ReturnType<typeof mongoFor>;
/** A short request deadline keeps the in-flight lease (twice the deadline) short for the takeover test. */
const REQUEST_DEADLINE_MS = 1_000;
beforeEach(async () => {
  const env = isolatedEnv(servers, {
    REQUEST_DEADLINE_MS: String(REQUEST_DEADLINE_MS),
    // At most half the request deadline (src/config.ts).
    MONGO_TIMEOUT_MS: String(REQUEST_DEADLINE_MS / 2),
  });
  mongo = mongoFor(env);
  app = await startInProcess(env, "api");
});
afterEach(async () => {
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});

interface Answer {
  status: number;
  replayed: string | null;
  body: Record<string, unknown>;
}

async function post(body: unknown, key: string): Promise<Answer> {
  const response = await postOrder(app, body, { "idempotency-key": key });
  return {
    status: response.status,
    replayed: response.headers.get("idempotent-replayed"),
    body: (await response.json()) as Record<string, unknown>,
  };
}

describe("Idempotency-Key", () => {
  test("same key and same body: the first order again, 201, Idempotent-Replayed: true", async () => {
    const body = orderBody({ type: "limit", limit_price: "10.50", quantity: 3 });
    const first = await post(body, "retry-1");
    expect(first.status).toBe(201);
    expect(first.replayed).toBeNull();

    const second = await post(body, "retry-1");
    expect(second.status).toBe(201);
    expect(second.replayed).toBe("true");
    expect(second.body).toEqual(first.body);

    expect(await mongo.orders.countDocuments()).toBe(1);
    expect(
      await mongo.orders.countDocuments({ _id: first.body.id as string, idempotency_key: "retry-1" }),
    ).toBe(1);
  });

  test('the same order written another way (10.5 for "10.50", other field order) is the same body', async () => {
    const first = await post(
      { type: "limit", side: "buy", instrument: "US0378331005", limit_price: "10.50", quantity: 1 },
      "normalised",
    );
    const second = await post(
      { quantity: 1, limit_price: 10.5, instrument: "US0378331005", side: "buy", type: "limit" },
      "normalised",
    );
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(second.replayed).toBe("true");
    expect(second.body.id).toBe(first.body.id);
    expect(await mongo.orders.countDocuments()).toBe(1);
  });

  test("same key and a different body: 422, and the first order stays the only one", async () => {
    const first = await post(orderBody({ quantity: 1 }), "reused");
    expect(first.status).toBe(201);
    const second = await post(orderBody({ quantity: 2 }), "reused");
    expect(second.status).toBe(422);
    // The documented 422 shape, naming the header as the field at fault.
    expect(typeof second.body.message).toBe("string");
    expect(second.body.errors).toEqual([{ field: "Idempotency-Key", message: expect.any(String) }]);
    expect(second.replayed).toBeNull();
    expect(await mongo.orders.countDocuments()).toBe(1);
    expect((await mongo.orders.findOne())?.quantity).toBe(1);
  });

  test("different keys with the same body are different orders; no key at all is never deduplicated", async () => {
    const body = orderBody();
    const a = await post(body, "key-a");
    const b = await post(body, "key-b");
    expect(a.body.id).not.toBe(b.body.id);
    expect((await postOrder(app, body)).status).toBe(201);
    expect((await postOrder(app, body)).status).toBe(201);
    expect(await mongo.orders.countDocuments()).toBe(4);
  });

  test("20 concurrent requests with one key store exactly one order; every answer is that order or 409", async () => {
    const body = orderBody({ type: "limit", limit_price: 99.99, quantity: 20 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => post(body, "concurrent-1")));

    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s !== 201 && s !== 409)).toEqual([]);
    const created = answers.filter((a) => a.status === 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(new Set(created.map((a) => a.body.id)).size).toBe(1);
    // Exactly one of them created it; the other 201s are replays.
    expect(created.filter((a) => a.replayed !== "true").length).toBe(1);
    for (const conflict of answers.filter((a) => a.status === 409)) {
      expect(typeof conflict.body.message).toBe("string");
    }

    expect(await mongo.orders.countDocuments()).toBe(1);
    expect((await mongo.orders.findOne())?._id).toBe(created[0]?.body.id as string);

    // Once the first is done, every retry is a replay of it.
    const later = await post(body, "concurrent-1");
    expect(later).toMatchObject({ status: 201, replayed: "true" });
    expect(later.body.id).toBe(created[0]?.body.id as string);
  });

  test("while the first request with a key is in flight: 409; once its lease ran out, a retry takes it over", async () => {
    // A first request that claimed the key and has not stored its order yet (in flight, or its process died).
    const body = orderBody({ quantity: 9 });
    const firstOrderId = Bun.randomUUIDv7();
    await mongo.db.collection("idempotency_keys").insertOne({
      _id: scopedIdempotencyKey(TEST_ACCOUNT, "in-flight") as never,
      request_hash: hashDraft(toDraft(body as OrderRequest)),
      order_id: firstOrderId,
      claimed_at: new Date(),
      expires_at: new Date(Date.now() + 24 * 3_600_000),
    });

    const conflict = await post(body, "in-flight");
    expect(conflict.status).toBe(409);
    expect(typeof conflict.body.message).toBe("string");
    expect(await mongo.orders.countDocuments()).toBe(0);
    // Another body with that key is refused even while the first is in flight.
    expect((await post(orderBody({ quantity: 10 }), "in-flight")).status).toBe(422);

    const taken = await waitFor(
      async () => {
        const answer = await post(body, "in-flight");
        expect([201, 409]).toContain(answer.status);
        return answer.status === 201 ? answer : null;
      },
      { timeoutMs: 10 * REQUEST_DEADLINE_MS, intervalMs: 200, message: "retry takes the key over" },
    );
    // The order id fixed by the first claim is the only one the key may ever create.
    expect(taken.body.id).toBe(firstOrderId);
    expect(await mongo.orders.countDocuments()).toBe(1);
    const replay = await post(body, "in-flight");
    expect(replay).toMatchObject({ status: 201, replayed: "true" });
    expect(replay.body.id).toBe(firstOrderId);
  });

  test("the key is remembered for at least 24 hours", async () => {
    const before = Date.now();
    expect((await post(orderBody(), "remembered")).status).toBe(201);
    const record = await mongo.db
      .collection<{ _id: string; expires_at: Date }>("idempotency_keys")
      .findOne({ _id: scopedIdempotencyKey(TEST_ACCOUNT, "remembered") });
    expect(record).not.toBeNull();
    expect(record!.expires_at.getTime() - before).toBeGreaterThanOrEqual(24 * 3_600_000);
  });
});
