/**
 * Redis down or hanging never fails POST /orders once the order is in MongoDB: the answer is 201, the
 * order is marked as not yet dispatched (`dispatch_failed_at`) and counted in
 * orders_dispatch_failures_total, and the sweeper of the actors (same process, kind "all") places it
 * once Redis is back, even though Redis came back empty.
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

// Real servers and fault injection take longer than bun's 5 s default (bunfig's timeout is not applied).
setDefaultTimeout(90_000);

const REQUEST_DEADLINE_MS = 5_000;
const ANSWER_BOUND_MS = REQUEST_DEADLINE_MS + 2_000;

const servers = useServers();

let app: RunningProcess;
let mongo: ReturnType<typeof mongoFor>;
beforeEach(async () => {
  const env = isolatedEnv(servers, {
    REQUEST_DEADLINE_MS: String(REQUEST_DEADLINE_MS),
    REDIS_COMMAND_TIMEOUT_MS: "300",
    SWEEP_INTERVAL_MS: "200",
    DISPATCH_GRACE_MS: "500",
    SHUTDOWN_DEADLINE_MS: "2000",
  });
  mongo = mongoFor(env);
  app = await startInProcess(env, "all");
});
afterEach(async () => {
  // Whatever a test did to Redis, the next one finds it running.
  servers.redis.resume();
  if (!(await redisAnswers())) await servers.redis.restart();
  await Promise.allSettled([app?.close(), mongo?.client.close()]);
});

async function redisAnswers(): Promise<boolean> {
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: servers.redis.port,
    socket: { data() {} },
  }).catch(() => null);
  socket?.end();
  return socket !== null;
}

async function dispatchFailures(): Promise<number> {
  const text = await (await app.handleOps(new Request("http://localhost/metrics"))).text();
  const line = text.split("\n").find((l) => l.startsWith("orders_dispatch_failures_total"));
  return Number(line?.split(" ").at(-1) ?? Number.NaN);
}

async function timedPost(body: unknown) {
  const started = performance.now();
  const response = await postOrder(app, body);
  const ms = performance.now() - started;
  return { status: response.status, ms, order: (await response.json()) as { id: string; status: string } };
}

function orderState(id: string) {
  return mongo.orders.findOne({ _id: id });
}

async function waitUntilPlaced(id: string) {
  return waitFor(
    async () => {
      const detail = (await (await getOrder(app, id)).json()) as {
        status: string;
      };
      return detail.status === "placed" ? detail : null;
    },
    { timeoutMs: 60_000, intervalMs: 100, message: `order ${id} placed` },
  );
}

describe("Redis unavailable at intake", () => {
  test("killed: 201, the order in MongoDB marked for dispatch and counted; the sweeper places it after Redis restarts", async () => {
    // The actors work normally first.
    const before = await timedPost(orderBody());
    expect(before.status).toBe(201);
    await waitUntilPlaced(before.order.id);
    expect(await dispatchFailures()).toBe(0);

    await servers.redis.kill();
    const during = await timedPost(orderBody({ type: "limit", limit_price: "10.50", quantity: 3 }));
    expect(during.status).toBe(201);
    expect(during.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(during.order.status).toBe("accepted");

    const marked = await waitFor(
      async () => {
        const stored = await orderState(during.order.id);
        return stored?.dispatch_failed_at ? stored : null;
      },
      { message: "dispatch_failed_at set" },
    );
    expect(marked).toMatchObject({ status: "accepted", limit_price_cents: 1050, quantity: 3 });
    expect(marked.dispatch_failed_at).toBeInstanceOf(Date);
    expect(await dispatchFailures()).toBe(1);

    // Redis comes back empty (no persistence in the harness): no stream, no consumer group, no entry.
    await servers.redis.restart({ empty: true });
    const placed = await waitUntilPlaced(during.order.id);
    expect(placed).toMatchObject({ status: "placed" });
    expect((await orderState(during.order.id))?.attempts).toBeGreaterThanOrEqual(1);
  });

  test("several orders while Redis is down are all placed once it is back", async () => {
    await servers.redis.kill();
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const answer = await timedPost(orderBody({ quantity: i }));
      expect(answer.status).toBe(201);
      ids.push(answer.order.id);
    }
    await waitFor(
      async () => (await mongo.orders.countDocuments({ dispatch_failed_at: { $ne: null } })) === 5,
      {
        message: "all five marked",
      },
    );
    expect(await dispatchFailures()).toBe(5);

    await servers.redis.restart({ empty: true });
    for (const id of ids) await waitUntilPlaced(id);
    expect(await mongo.orders.countDocuments({ status: "placed" })).toBe(5);
  });

  test("hanging (SIGSTOP): 201 after the short XADD timeout, marked for dispatch; placed after it resumes", async () => {
    servers.redis.pause();
    const during = await timedPost(orderBody({ side: "sell" }));
    expect(during.status).toBe(201);
    expect(during.ms).toBeLessThan(ANSWER_BOUND_MS);
    await waitFor(async () => (await orderState(during.order.id))?.dispatch_failed_at, {
      message: "dispatch_failed_at set",
    });
    expect(await dispatchFailures()).toBeGreaterThanOrEqual(1);

    servers.redis.resume();
    await waitUntilPlaced(during.order.id);
  });
});
