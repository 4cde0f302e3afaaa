/**
 * MongoDB gone (killed, or paused with SIGSTOP past every timeout): POST /orders answers the exact 500
 * body within a few seconds instead of hanging, and the same running service answers 201 again by
 * itself once MongoDB is back. A key whose first request failed can be retried into exactly one order.
 * A 500 never hides a placement: once the service has tried to store the order, the 500 names its id in
 * X-Order-Id (the body stays exactly the contract's), so a client without an Idempotency-Key can ask
 * GET /orders/{id} whether it was stored after all.
 * The tests share one MongoDB-wire server and leave it running (restarted or resumed) even on failure.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  getOrder,
  isolatedEnv,
  mongoFor,
  orderBody,
  postOrder,
  startInProcess,
  useServers,
} from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

const MONGO_TIMEOUT_MS = 1_000;
const REQUEST_DEADLINE_MS = 2_500;
/** Shorter than the deadline, so that a shed request is seen while an earlier one still waits. */
const SHED_AFTER_MS = 1_000;
/** "Answered within a few seconds": the deadline plus generous slack for a loaded CI machine. */
const ANSWER_BOUND_MS = REQUEST_DEADLINE_MS + 2_000;
const INTERNAL_ERROR = JSON.stringify({ message: "Internal server error while placing the order" });
const SHED_BODY = JSON.stringify({
  message: "The order store is not keeping up; nothing was stored. Retry after 1 s",
});
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// Real servers and fault injection take longer than bun's 5 s default (bunfig's timeout is not applied).
setDefaultTimeout(60_000);

const servers = useServers();

let app: RunningProcess;
let env: Record<string, string>;
let mongo: ReturnType<typeof mongoFor>;
beforeEach(async () => {
  env = isolatedEnv(servers, {
    MONGO_TIMEOUT_MS: String(MONGO_TIMEOUT_MS),
    REQUEST_DEADLINE_MS: String(REQUEST_DEADLINE_MS),
    INTAKE_SHED_AFTER_MS: String(SHED_AFTER_MS),
    DISPATCH_GRACE_MS: "1500",
  });
  mongo = mongoFor(env);
  app = await startInProcess(env, "api");
});
afterEach(async () => {
  // Whatever a test did to MongoDB, the next one finds it running.
  if (servers.mongo.faultable) {
    servers.mongo.resume();
    if (!(await mongoAnswers())) await servers.mongo.restart();
  }
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});

/** The sum of the samples of `name` whose labels contain `label` (all samples when none is given). */
function sampleSum(text: string, name: string, label = ""): number {
  return text
    .split("\n")
    .filter((line) => line.startsWith(name) && !line.startsWith("#") && line.includes(label))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}

async function mongoAnswers(): Promise<boolean> {
  return mongo.db
    .command({ ping: 1 }, { signal: AbortSignal.timeout(3_000) })
    .then((r) => r.ok === 1)
    .catch(() => false);
}

async function timedPost(body: unknown, headers: Record<string, string> = {}) {
  const started = performance.now();
  const response = await postOrder(app, body, headers);
  return {
    status: response.status,
    text: await response.text(),
    ms: performance.now() - started,
    orderId: response.headers.get("x-order-id"),
    retryAfter: response.headers.get("retry-after"),
  };
}

/** What GET /orders/{id} says once the service answers again: the order's quantity, or null for 404. */
async function lookUp(id: string): Promise<number | null> {
  return waitFor(
    async () => {
      const response = await getOrder(app, id);
      if (response.status === 404) return { quantity: null };
      if (response.status !== 200) return null;
      return { quantity: ((await response.json()) as { quantity: number }).quantity };
    },
    { timeoutMs: 30_000, intervalMs: 250, message: "GET /orders/{id} answers again" },
  ).then((found) => found.quantity);
}

function expectInternalError(answer: { status: number; text: string; ms: number }) {
  expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: INTERNAL_ERROR });
  expect(answer.ms).toBeLessThan(ANSWER_BOUND_MS);
}

/** Retries (as a client would) until the same running service answers 201 again. */
function until201(body: unknown, headers: Record<string, string> = {}) {
  return waitFor(
    async () => {
      const response = await postOrder(app, body, headers);
      return response.status === 201 ? ((await response.json()) as { id: string }) : null;
    },
    { timeoutMs: 30_000, intervalMs: 250, message: "201 again after MongoDB came back" },
  );
}

// An external MongoDB (TEST_MONGO_URL, e.g. a CI service container) cannot be killed by the harness.
const ownsMongo = !process.env.TEST_MONGO_URL;

describe.skipIf(!ownsMongo)("MongoDB unavailable", () => {
  test("killed: the exact 500 body within a few seconds; after a restart, 201 again from the same process", async () => {
    expect((await postOrder(app, orderBody())).status).toBe(201);

    await servers.mongo.kill();
    expectInternalError(await timedPost(orderBody({ quantity: 2 })));
    // Still no hanging requests on the second try: the driver does not queue forever. A killed store
    // refuses connections, so the first request's steps fail fast, mostly within INTAKE_SHED_AFTER_MS;
    // where they took longer, the second order is shed instead (503, never stored).
    const second = await timedPost(orderBody({ quantity: 3 }));
    if (second.status === 503) expect(second.text).toBe(SHED_BODY);
    else expectInternalError(second);

    await servers.mongo.restart();
    const order = await until201(orderBody({ quantity: 4 }));
    const get = await getOrder(app, order.id);
    expect(get.status).toBe(200);
    // The orders answered 500 (no Idempotency-Key) are withdrawn once MongoDB is back: their ids are
    // taken by withdrawn orders that nothing places; only the 201s are live orders.
    const answered500 = second.status === 500 ? [2, 3] : [2];
    await waitFor(
      async () =>
        (await mongo.orders.countDocuments({ status: "withdrawn", quantity: { $in: answered500 } })) ===
        answered500.length,
      { timeoutMs: 30_000, message: "the orders of the 500s withdrawn" },
    );
    const live = await mongo.orders.find({ status: { $ne: "withdrawn" } }).toArray();
    expect(live.map((o) => o.quantity).sort()).toEqual([1, 4]);
  });

  test("paused (SIGSTOP) longer than every timeout: the exact 500 body within a few seconds; resumed, 201 again", async () => {
    expect((await postOrder(app, orderBody())).status).toBe(201);

    servers.mongo.pause();
    // Requests one after the other keep MongoDB stopped past the driver's operation and socket
    // timeouts: the first waits at the store until its deadline; while its store steps still wait (up
    // to their own abort deadline), the next ones are shed; then one is let through to the store again.
    const first = await timedPost(orderBody({ quantity: 2 }));
    expectInternalError(first);
    const later = await waitFor(
      async () => {
        const answer = await timedPost(orderBody({ quantity: 3 }));
        return answer.status === 500 ? answer : null;
      },
      { timeoutMs: 20_000, intervalMs: 100, message: "an order let through to the paused store again" },
    );
    expectInternalError(later);
    expect(first.ms + later.ms).toBeGreaterThan(MONGO_TIMEOUT_MS * 2);

    servers.mongo.resume();
    const order = await until201(orderBody({ quantity: 4 }));
    expect(await mongo.orders.countDocuments({ _id: order.id })).toBe(1);
  });

  test("paused: while an intake step waits INTAKE_SHED_AFTER_MS, new orders get 503 with Retry-After at once (before any key look-up) and nothing is stored", async () => {
    expect((await postOrder(app, orderBody())).status).toBe(201); // warm connections

    servers.mongo.pause();
    const first = timedPost(orderBody({ quantity: 2 }));
    // Until the first order's store step has waited SHED_AFTER_MS (or one ended after waiting as long:
    // the driver's heartbeat timeout can end the insert, and its read-back waits on).
    await waitFor(
      async () => {
        const text = await (await app.handleOps(new Request("http://localhost/metrics"))).text();
        return (
          sampleSum(text, "orders_intake_store_oldest_wait_seconds") >= SHED_AFTER_MS / 1000 ||
          sampleSum(text, "orders_intake_admission_state") === 2
        );
      },
      { timeoutMs: 10_000, intervalMs: 50, message: "an intake step waiting past the shedding threshold" },
    );
    const shed = await timedPost(orderBody({ quantity: 3 }));
    const shedWithKey = await timedPost(orderBody({ quantity: 5 }), {
      "idempotency-key": "shed-then-retried",
    });
    // A key not in the cache would be looked up in the same paused store: shed before the look-up.
    const stranger = await timedPost(orderBody({ quantity: 6 }), {
      authorization: "Bearer ok_not-a-known-key",
    });
    const ops = await (await app.handleOps(new Request("http://localhost/metrics"))).text();
    expectInternalError(await first); // the order already at the store: answered as before

    for (const answer of [shed, shedWithKey, stranger]) {
      expect(answer.status).toBe(503);
      expect(answer.text).toBe(SHED_BODY);
      expect(answer.retryAfter).toBe("1");
      // Refused before any id was in play, and without waiting for the store.
      expect(answer.orderId).toBeNull();
      expect(answer.ms).toBeLessThan(REQUEST_DEADLINE_MS);
    }
    expect(sampleSum(ops, "orders_intake_shed_total")).toBe(3);
    expect(sampleSum(ops, "orders_intake_admission_state")).toBe(2); // open

    servers.mongo.resume();
    // The key was never claimed: its retry is a new order at once, not a 409 nor a replay.
    const retried = await until201(orderBody({ quantity: 5 }), { "idempotency-key": "shed-then-retried" });
    const replay = await postOrder(app, orderBody({ quantity: 5 }), {
      "idempotency-key": "shed-then-retried",
    });
    expect(((await replay.json()) as { id: string }).id).toBe(retried.id);
    // The first order (a 500 without a key) is withdrawn once the store answers; the shed one never existed.
    await waitFor(
      async () => (await mongo.orders.countDocuments({ quantity: 2, status: { $ne: "withdrawn" } })) === 0,
      { timeoutMs: 30_000, message: "the order of the 500 withdrawn or absent" },
    );
    expect(await mongo.orders.countDocuments({ quantity: { $in: [3, 6] } })).toBe(0);
    expect(await mongo.orders.countDocuments({ quantity: 5 })).toBe(1);
    const after = await (await app.handleOps(new Request("http://localhost/metrics"))).text();
    expect(sampleSum(after, "orders_intake_store_oldest_wait_seconds")).toBeLessThan(SHED_AFTER_MS / 1000);
    expect(sampleSum(after, "orders_intake_admission_state")).toBe(0); // closed by a step answered in time
  });

  test("a request that cannot reach MongoDB is also answered by GET /health/ready as not ready", async () => {
    await servers.mongo.kill();
    expectInternalError(await timedPost(orderBody()));
    const ready = await app.handleOps(new Request("http://localhost/health/ready"));
    expect(ready.status).toBe(503);
    await servers.mongo.restart();
    await waitFor(
      async () => (await app.handleOps(new Request("http://localhost/health/ready"))).status === 200,
      { timeoutMs: 30_000, message: "ready again" },
    );
  });
});

describe.skipIf(!ownsMongo)("a key whose first request failed", () => {
  test("MongoDB killed during the first request: 500; the retry after recovery yields one order", async () => {
    const body = orderBody({ type: "limit", limit_price: "42.42" });
    const key = { "idempotency-key": "failed-first-kill" };

    await servers.mongo.kill();
    expectInternalError(await timedPost(body, key));
    await servers.mongo.restart();

    const order = await until201(body, key);
    const replay = await postOrder(app, body, key);
    expect(replay.status).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(((await replay.json()) as { id: string }).id).toBe(order.id);
    expect(await mongo.orders.countDocuments()).toBe(1);
  });

  test("MongoDB paused while the first request holds the key: 500; retries (409 until its lease ends) yield one order", async () => {
    const body = orderBody({ side: "sell", quantity: 5 });
    const key = { "idempotency-key": "failed-first-pause" };
    expect((await postOrder(app, orderBody())).status).toBe(201); // warm connections

    servers.mongo.pause();
    expectInternalError(await timedPost(body, key));
    servers.mongo.resume();

    const statuses = new Set<number>();
    const order = await waitFor(
      async () => {
        const response = await postOrder(app, body, key);
        statuses.add(response.status);
        return response.status === 201 ? ((await response.json()) as { id: string }) : null;
      },
      { timeoutMs: 30_000, intervalMs: 250, message: "the retry with the key gets 201" },
    );
    // While waiting, only "still in flight", the 500 body or "shed, retry"; never a 422 or a second order.
    expect([...statuses].filter((s) => ![201, 409, 500, 503].includes(s))).toEqual([]);
    const replay = await postOrder(app, body, key);
    expect(replay.status).toBe(201);
    expect(((await replay.json()) as { id: string }).id).toBe(order.id);
    expect(await mongo.orders.countDocuments({ side: "sell" })).toBe(1);
  });
});

describe("the 500 of POST /orders names the order id", () => {
  test("answers other than 500 carry no X-Order-Id", async () => {
    const created = await postOrder(app, orderBody());
    expect(created.status).toBe(201);
    expect(created.headers.get("x-order-id")).toBeNull();
    const invalid = await timedPost(orderBody({ quantity: 0 }));
    expect(invalid.status).toBe(422);
    expect(invalid.orderId).toBeNull();
  });

  test.skipIf(!ownsMongo)(
    "MongoDB paused (SIGSTOP) mid-insert: the 500 names the id; the order is withdrawn, never placed, though actors sweep",
    async () => {
      // Actors that would place the order as soon as its dispatch grace (1.5 s in this file) passes.
      const actors = await startInProcess({ ...env, SWEEP_INTERVAL_MS: "200" }, "actors");
      try {
        expect((await postOrder(app, orderBody())).status).toBe(201); // warm connections
        servers.mongo.pause();
        const answer = await timedPost(orderBody({ quantity: 7 }));
        expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: INTERNAL_ERROR });
        expect(answer.orderId).toMatch(UUID_V7);
        servers.mongo.resume();

        // Whether the insert landed or not, the withdrawal leaves exactly the withdrawn order under the
        // id the client was given, and no order of this request under any other id.
        const withdrawn = await waitFor(
          async () => {
            const stored = await mongo.orders.find({ quantity: 7 }).toArray();
            return stored.length === 1 && stored[0]?.status === "withdrawn" ? stored : null;
          },
          { timeoutMs: 30_000, intervalMs: 250, message: "the order of the 500 withdrawn" },
        );
        expect(withdrawn.map((o) => o._id)).toEqual([answer.orderId!]);
        // Past its grace, through several sweeps: still withdrawn, and the actors placed only the first.
        await Bun.sleep(2_500);
        expect((await mongo.orders.findOne({ _id: answer.orderId! }))?.status).toBe("withdrawn");
        const detail = (await (await getOrder(app, answer.orderId!)).json()) as { status: string };
        expect(detail.status).toBe("withdrawn");
        await waitFor(async () => (await mongo.orders.countDocuments({ status: "placed" })) === 1, {
          timeoutMs: 15_000,
          message: "the warm-up order placed",
        });
        const metrics = await (await actors.handleOps(new Request("http://localhost/metrics"))).text();
        expect(sampleSum(metrics, "placement_outcomes_total", 'outcome="placed"')).toBe(1);
        expect(sampleSum(metrics, "placement_final_write_mismatches_total")).toBe(0);
        const apiMetrics = await (await app.handleOps(new Request("http://localhost/metrics"))).text();
        expect(sampleSum(apiMetrics, "orders_withdrawals_total", 'result="withdrawn"')).toBe(1);
      } finally {
        await actors.close();
      }
    },
  );

  test.skipIf(!ownsMongo)(
    "MongoDB killed: the service's own 500 names the id, under which the order is found withdrawn",
    async () => {
      expect((await postOrder(app, orderBody())).status).toBe(201);

      await servers.mongo.kill();
      const answer = await timedPost(orderBody({ quantity: 8 }));
      expect({ status: answer.status, text: answer.text }).toEqual({ status: 500, text: INTERNAL_ERROR });
      expect(answer.orderId).toMatch(UUID_V7);

      await servers.mongo.restart();
      // The withdrawal lands once MongoDB is back: the id is taken by the withdrawn order for good.
      await waitFor(
        async () => (await mongo.orders.findOne({ _id: answer.orderId! }))?.status === "withdrawn",
        {
          timeoutMs: 30_000,
          intervalMs: 250,
          message: "the order of the 500 withdrawn",
        },
      );
      expect(await lookUp(answer.orderId!)).toBe(8);
      expect(await mongo.orders.countDocuments({ quantity: 8 })).toBe(1);
    },
  );
});
