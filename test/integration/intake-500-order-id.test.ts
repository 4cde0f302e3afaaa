/**
 * A 500 never hides a placement from the client: once the service has tried to store the order, the 500
 * answer of POST /orders names the order's id in X-Order-Id (the body stays exactly the contract's), so
 * a client without an Idempotency-Key can ask GET /orders/{id} whether the order was stored after all.
 * MongoDB is made to fail for real: paused (SIGSTOP, the request deadline answers while the insert is
 * still in flight) and killed (the service's own failure after the insert and its read-back).
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import { waitFor } from "../harness/wait-for.ts";
import {
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  startInProcess,
  useServers,
} from "../support/system.ts";

const MONGO_TIMEOUT_MS = 1_000;
const REQUEST_DEADLINE_MS = 2_500;
const INTERNAL_ERROR = JSON.stringify({ message: "Internal server error while placing the order" });
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// Real servers and fault injection take longer than bun's 5 s default.
setDefaultTimeout(60_000);

const servers = useServers();

let app: RunningProcess;
let mongo: ReturnType<typeof mongoFor>;
beforeEach(async () => {
  const env = isolatedEnv(servers, {
    MONGO_TIMEOUT_MS: String(MONGO_TIMEOUT_MS),
    REQUEST_DEADLINE_MS: String(REQUEST_DEADLINE_MS),
  });
  mongo = mongoFor(env);
  app = await startInProcess(env, "api");
});
afterEach(async () => {
  // Whatever a test did to MongoDB, the next one (and the next file) finds it running.
  if (servers.mongo.faultable) {
    servers.mongo.resume();
    if (!(await mongoAnswers())) await servers.mongo.restart();
  }
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});

async function mongoAnswers(): Promise<boolean> {
  return mongo.db
    .command({ ping: 1 }, { signal: AbortSignal.timeout(3_000) })
    .then((r) => r.ok === 1)
    .catch(() => false);
}

async function post(body: unknown, headers: Record<string, string> = {}) {
  const response = await postOrder(app, body, headers);
  return {
    status: response.status,
    text: await response.text(),
    orderId: response.headers.get("x-order-id"),
  };
}

/** What GET /orders/{id} says once the service answers again: the order's quantity, or null for 404. */
async function lookUp(id: string): Promise<number | null> {
  return waitFor(
    async () => {
      const response = await app.handle(new Request(`http://localhost/orders/${id}`));
      if (response.status === 404) return { quantity: null };
      if (response.status !== 200) return null;
      return { quantity: ((await response.json()) as { quantity: number }).quantity };
    },
    { timeoutMs: 30_000, intervalMs: 250, message: "GET /orders/{id} answers again" },
  ).then((found) => found.quantity);
}

const ownsMongo = !process.env.TEST_MONGO_URL;

describe("the 500 of POST /orders names the order id", () => {
  test("answers other than 500 carry no X-Order-Id", async () => {
    const created = await postOrder(app, orderBody());
    expect(created.status).toBe(201);
    expect(created.headers.get("x-order-id")).toBeNull();
    const invalid = await post(orderBody({ quantity: 0 }));
    expect(invalid.status).toBe(422);
    expect(invalid.orderId).toBeNull();
  });

  test.skipIf(!ownsMongo)(
    "MongoDB paused (SIGSTOP): the deadline's 500 names the id, under which the order is found if it was stored after all",
    async () => {
      const first = (await (await postOrder(app, orderBody())).json()) as { id: string };

      servers.mongo.pause();
      const answer = await post(orderBody({ quantity: 7 }));
      expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: INTERNAL_ERROR });
      expect(answer.orderId).toMatch(UUID_V7);
      expect(answer.orderId).not.toBe(first.id);
      servers.mongo.resume();

      // The insert was sent before the pause took effect or queued behind it: it may land now. Either
      // way the client's look-up under X-Order-Id and the database agree, and no order of this request
      // exists under any other id.
      await waitFor(mongoAnswers, { timeoutMs: 30_000, intervalMs: 250, message: "MongoDB answers" });
      await Bun.sleep(3 * MONGO_TIMEOUT_MS);
      const stored = await mongo.orders.find({ quantity: 7 }).toArray();
      expect(stored.map((o) => o._id).filter((id) => id !== answer.orderId)).toEqual([]);
      expect(await lookUp(answer.orderId!)).toBe(stored.length === 1 ? 7 : null);
      console.log(
        `[500 order id] paused MongoDB: the order of the 500 was ${stored.length === 1 ? "stored after all" : "not stored"}; GET /orders/${answer.orderId} says so`,
      );
    },
  );

  test.skipIf(!ownsMongo)(
    "MongoDB killed: the service's own 500 names the id, under which nothing is found",
    async () => {
      expect((await postOrder(app, orderBody())).status).toBe(201);

      await servers.mongo.kill();
      const answer = await post(orderBody({ quantity: 8 }));
      expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: INTERNAL_ERROR });
      expect(answer.orderId).toMatch(UUID_V7);

      await servers.mongo.restart();
      expect(await lookUp(answer.orderId!)).toBeNull();
      expect(await mongo.orders.countDocuments({ quantity: 8 })).toBe(0);
    },
  );
});
