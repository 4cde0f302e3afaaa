/**
 * WebSocket /orders/events (issue #13, item 4): a client sees its own orders' updates live, resumes
 * after a disconnect with `last_event_id` without a duplicate or a gap, never sees another account's,
 * and is refused over HTTP (401, 422, 426, 503) before any upgrade. The API runs in process on a real
 * port, against real Redis and MongoDB-wire servers; clients are real WebSockets; the events the
 * actors will publish are published through RedisOrderEvents, as they will publish them.
 */
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  setDefaultTimeout,
  test,
} from "bun:test";
import { Cluster, Redis } from "ioredis";
import { createMetrics } from "../../src/adapters/metrics.ts";
import { RedisOrderEvents } from "../../src/adapters/order-events.ts";
import { parseClusterNodes } from "../../src/adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../../src/adapters/redis-keys.ts";
import type { OrderEvent } from "../../src/domain/ports.ts";
import { silentLogger } from "../../src/logger.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import { type RedisCluster, startRedisCluster } from "../support/servers/servers.ts";
import {
  authorizationFor,
  bearer,
  createApiKey,
  isolatedEnv,
  orderBody,
  postOrder,
  startInProcess,
  TEST_ACCOUNT,
  useServers,
} from "../support/system.ts";
import { freePort, waitFor } from "../support/wait-for.ts";

setDefaultTimeout(60_000);

const servers = useServers();

interface Frame {
  id: string;
  order_id: string;
  status: string;
  at: string;
  filled_quantity: number;
  average_price: number | null;
  execution: { exec_id: string; exec_type: string; quantity: number; price: number | null } | null;
  rejection_reason: string | null;
}

interface Feed {
  frames: Frame[];
  /** The subprotocol the server selected ("" for none). */
  protocol: string;
  closed: Promise<{ code: number; reason: string }>;
  /** The frames once at least `count` arrived. */
  next(count: number): Promise<Frame[]>;
  close(): void;
}

let env: Record<string, string>;
let app: RunningProcess;
let redis: Redis;
let events: RedisOrderEvents;
let keys: RedisKeys;
const feeds: Feed[] = [];

beforeEach(async () => {
  env = isolatedEnv(servers);
  app = await startInProcess(env, "api");
  redis = new Redis(env.REDIS_URL!);
  keys = createRedisKeys(env.REDIS_KEY_PREFIX!, 1);
  events = new RedisOrderEvents(redis, keys, {
    retained: 10_000,
    metrics: createMetrics("actors"),
    logger: silentLogger,
  });
});
afterEach(async () => {
  for (const feed of feeds.splice(0)) feed.close();
  await Promise.allSettled([app?.close(), redis?.quit()]);
});

const feedUrl = (target: RunningProcess, query = "") => `ws://127.0.0.1:${target.port}/orders/events${query}`;

/** Opens a feed (the registered key in a header unless `options` say otherwise); rejects when refused. */
async function connect(
  query = "",
  options: { headers?: Record<string, string>; protocols?: string[] } = { headers: authorizationFor(app) },
  target: RunningProcess = app,
): Promise<Feed> {
  const socket = new WebSocket(feedUrl(target, query), options as unknown as string[]);
  const frames: Frame[] = [];
  socket.onmessage = (message) => frames.push(JSON.parse(String(message.data)) as Frame);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.onclose = (event) => resolve({ code: event.code, reason: event.reason });
  });
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = (event) => reject(new Error((event as ErrorEvent).message ?? "WebSocket refused"));
  });
  const feed: Feed = {
    frames,
    protocol: socket.protocol,
    closed,
    next: (count) =>
      waitFor(() => (frames.length >= count ? frames : null), {
        message: `${count} frames`,
      }),
    close: () => socket.close(),
  };
  feeds.push(feed);
  return feed;
}

/** The upgrade request as a browser sends it, answered over HTTP (fetch shows a refusal's status and body). */
function upgrade(query = "", headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${app.port}/orders/events${query}`, {
    headers: {
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-version": "13",
      "sec-websocket-key": btoa("0123456789abcdef"),
      ...headers,
    },
  });
}

/** An event of TEST_ACCOUNT's order `orderId`, as a placement or execution actor publishes it. */
function actorEvent(orderId: string, fields: Partial<OrderEvent> = {}): OrderEvent {
  return {
    order_id: orderId,
    account: TEST_ACCOUNT,
    status: "placed",
    at: new Date("2024-06-10T06:13:20.000Z"),
    filled_quantity: 0,
    average_price_cents: null,
    ...fields,
  };
}

/**
 * POST /orders, then waits until the API's `accepted` event is in the account's stream: the API
 * publishes it after answering (it never delays a 201), and a real actor's events for the order come
 * later still (after the stream entry, the lease and the venue), as the test's own must.
 */
async function placeOrder(headers: Record<string, string> = {}, account = TEST_ACCOUNT): Promise<string> {
  const response = await postOrder(app, orderBody({ quantity: 100 }), headers);
  expect(response.status).toBe(201);
  const id = ((await response.json()) as { id: string }).id;
  await waitFor(
    async () =>
      (await redis.xrange(keys.orderEvents(account), "-", "+")).some(([, fields]) =>
        fields.some((field) => field.includes(id)),
      ) || null,
    { message: `the accepted event of order ${id}` },
  );
  return id;
}

const strictlyIncreasing = (ids: string[]) =>
  ids.every((id, i) => {
    if (i === 0) return true;
    const [ms, seq] = id.split("-").map(BigInt) as [bigint, bigint];
    const [pms, pseq] = (ids[i - 1] as string).split("-").map(BigInt) as [bigint, bigint];
    return ms > pms || (ms === pms && seq > pseq);
  });

describe("live updates", () => {
  test("POST /orders: an `accepted` frame for the new order, with every field of the frame", async () => {
    const feed = await connect();
    const orderId = await placeOrder();
    const [frame] = await feed.next(1);
    expect(frame).toEqual({
      id: expect.stringMatching(/^\d+-\d+$/),
      order_id: orderId,
      status: "accepted",
      at: expect.any(String),
      filled_quantity: 0,
      average_price: null,
      execution: null,
      rejection_reason: null,
    });
    expect(Number.isNaN(Date.parse(frame!.at))).toBe(false);
  });

  test("the actors' events (placed, partially_filled with an execution, filled) arrive in order, prices in currency units", async () => {
    const feed = await connect();
    const orderId = await placeOrder();
    await feed.next(1);
    await events.publish(actorEvent(orderId, { status: "placed" }));
    await events.publish(
      actorEvent(orderId, {
        status: "partially_filled",
        filled_quantity: 40,
        average_price_cents: 10125,
        execution: { exec_id: "E-1", exec_type: "trade", quantity: 40, price_cents: 10125 },
      }),
    );
    await events.publish(
      actorEvent(orderId, {
        status: "filled",
        filled_quantity: 100,
        average_price_cents: 10132.5,
        execution: { exec_id: "E-2", exec_type: "trade", quantity: 60, price_cents: 10137 },
      }),
    );
    const frames = await feed.next(4);
    expect(frames.map((f) => f.status)).toEqual(["accepted", "placed", "partially_filled", "filled"]);
    expect(strictlyIncreasing(frames.map((f) => f.id))).toBe(true);
    expect(frames[2]).toMatchObject({
      filled_quantity: 40,
      average_price: 101.25,
      execution: { exec_id: "E-1", exec_type: "trade", quantity: 40, price: 101.25 },
    });
    expect(frames[3]).toMatchObject({ filled_quantity: 100, average_price: 101.325 });
  });

  test("an idempotent replay of POST /orders publishes nothing more", async () => {
    const feed = await connect();
    const key = { "idempotency-key": "replayed-once" };
    const orderId = await placeOrder(key);
    expect((await postOrder(app, orderBody({ quantity: 100 }), key)).headers.get("idempotent-replayed")).toBe(
      "true",
    );
    // A later event as a marker: everything published before it has arrived by then.
    await events.publish(actorEvent(orderId));
    const frames = await feed.next(2);
    expect(frames.map((f) => f.status)).toEqual(["accepted", "placed"]);
  });

  test("another account's events never arrive", async () => {
    const otherKey = await createApiKey(env, "account-b");
    const mine = await connect();
    const theirs = await connect("", { headers: bearer(otherKey) });
    const myOrder = await placeOrder();
    const theirOrder = await placeOrder(bearer(otherKey), "account-b");
    await events.publish(actorEvent(myOrder));
    await events.publish({ ...actorEvent(theirOrder), account: "account-b" });
    expect((await mine.next(2)).map((f) => [f.order_id, f.status])).toEqual([
      [myOrder, "accepted"],
      [myOrder, "placed"],
    ]);
    expect((await theirs.next(2)).map((f) => [f.order_id, f.status])).toEqual([
      [theirOrder, "accepted"],
      [theirOrder, "placed"],
    ]);
    // A resume from the start reads the account's own stream only.
    const resumed = await connect("?last_event_id=0-0", { headers: bearer(otherKey) });
    await events.publish({ ...actorEvent(theirOrder, { status: "filled" }), account: "account-b" });
    expect((await resumed.next(3)).map((f) => f.order_id)).toEqual([theirOrder, theirOrder, theirOrder]);
  });
});

describe("resuming", () => {
  test("reconnecting with last_event_id: only the later events, then live ones, no duplicate", async () => {
    const first = await connect();
    const orderId = await placeOrder();
    await events.publish(actorEvent(orderId, { status: "placed" }));
    const seen = await first.next(2);
    first.close();
    await first.closed;
    // Missed while disconnected.
    await events.publish(actorEvent(orderId, { status: "partially_filled", filled_quantity: 10 }));
    await events.publish(actorEvent(orderId, { status: "partially_filled", filled_quantity: 20 }));

    const second = await connect(`?last_event_id=${seen[0]!.id}`);
    await events.publish(actorEvent(orderId, { status: "filled", filled_quantity: 100 }));
    const frames = await second.next(4);
    expect(frames.map((f) => [f.status, f.filled_quantity])).toEqual([
      ["placed", 0],
      ["partially_filled", 10],
      ["partially_filled", 20],
      ["filled", 100],
    ]);
    expect(frames[0]!.id).toBe(seen[1]!.id);
    expect(strictlyIncreasing([seen[0]!.id, ...frames.map((f) => f.id)])).toBe(true);
  });

  test("events published during a catch-up of several pages arrive once each, in order", async () => {
    const orderId = "0190a6c2-8f3e-7c4a-9b1d-2e5f6a7b8c9d";
    const before = 1_200;
    const during = 300;
    for (let i = 0; i < before; i++) await events.publish(actorEvent(orderId, { filled_quantity: i }));
    const feed = await connect("?last_event_id=0-0");
    for (let i = before; i < before + during; i++) {
      await events.publish(actorEvent(orderId, { filled_quantity: i }));
    }
    const frames = await feed.next(before + during);
    // A little longer for anything extra (a duplicate) that would follow.
    await events.publish(actorEvent(orderId, { filled_quantity: before + during }));
    await feed.next(before + during + 1);
    expect(frames.map((f) => f.filled_quantity)).toEqual(
      Array.from({ length: before + during + 1 }, (_, i) => i),
    );
    expect(strictlyIncreasing(frames.map((f) => f.id))).toBe(true);
  });

  test("the process's subscriber connection is cut: events published meanwhile still arrive, once, in order", async () => {
    const feed = await connect();
    const orderId = await placeOrder();
    await feed.next(1);
    await redis.call("CLIENT", "KILL", "TYPE", "pubsub");
    for (let i = 1; i <= 20; i++) await events.publish(actorEvent(orderId, { filled_quantity: i }));
    const frames = await feed.next(21);
    expect(frames.map((f) => f.filled_quantity)).toEqual(Array.from({ length: 21 }, (_, i) => i));
    expect(strictlyIncreasing(frames.map((f) => f.id))).toBe(true);
  });

  test("the process subscribes to the events channel only while a socket is open, and misses nothing when it does", async () => {
    const channel = createRedisKeys(env.REDIS_KEY_PREFIX!, 1).orderEventsChannel;
    const subscribers = async () =>
      Number(((await redis.call("PUBSUB", "NUMSUB", channel)) as [string, number])[1]);
    expect(await subscribers()).toBe(0);
    // Published while nobody listened: the first socket gets it from the stream, then live ones.
    const orderId = await placeOrder();
    const first = await connect("?last_event_id=0-0");
    await waitFor(async () => (await subscribers()) === 1, { message: "subscribed with the first socket" });
    await events.publish(actorEvent(orderId, { filled_quantity: 1 }));
    expect((await first.next(2)).map((f) => f.filled_quantity)).toEqual([0, 1]);
    const second = await connect("?last_event_id=0-0");
    await second.next(2);
    first.close();
    await events.publish(actorEvent(orderId, { filled_quantity: 2 }));
    expect((await second.next(3)).map((f) => f.filled_quantity)).toEqual([0, 1, 2]);
    expect(await subscribers()).toBe(1);
    second.close();
    await waitFor(async () => (await subscribers()) === 0, { message: "unsubscribed after the last socket" });
  });
});

describe("refused before the upgrade, as /orders refuses", () => {
  async function expectRefused(response: Response, status: number): Promise<Record<string, unknown>> {
    expect(response.status).toBe(status);
    expect(response.headers.get("content-type")).toStartWith("application/json");
    return (await response.json()) as Record<string, unknown>;
  }

  test("no key: 401 with the Bearer challenge and a {message} body; a WebSocket is not opened", async () => {
    const response = await upgrade();
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="orders"');
    expect(Object.keys(await expectRefused(response, 401))).toEqual(["message"]);
    await expect(connect("", {})).rejects.toThrow();
  });

  test("an unknown key, in the header or as the subprotocol: 401 invalid_token", async () => {
    const unknown = `ok_0123456789ab_${"A".repeat(43)}`;
    for (const headers of [bearer(unknown), { "sec-websocket-protocol": `bearer, ${unknown}` }]) {
      const response = await upgrade("", headers);
      expect(response.headers.get("www-authenticate")).toStartWith(
        'Bearer realm="orders", error="invalid_token"',
      );
      expect(Object.keys(await expectRefused(response, 401))).toEqual(["message"]);
    }
    await expect(connect("", { headers: bearer(unknown) })).rejects.toThrow();
    await expect(connect("", { protocols: ["bearer", unknown] })).rejects.toThrow();
  });

  test.each([["abc"], ["1-"], ["-1"], ["1.5-0"], ["99999999999999999999999-0"], [""]])(
    "last_event_id=%p: 422 naming the field",
    async (value) => {
      const body = await expectRefused(await upgrade(`?last_event_id=${value}`, authorizationFor(app)), 422);
      expect(body).toEqual({
        message: "A query parameter is invalid",
        errors: [{ field: "last_event_id", message: expect.any(String) }],
      });
    },
  );

  test("a plain GET (not a WebSocket): 426 Upgrade Required", async () => {
    const response = await fetch(`http://127.0.0.1:${app.port}/orders/events`, {
      headers: authorizationFor(app),
    });
    expect(response.headers.get("upgrade")).toBe("websocket");
    expect(Object.keys(await expectRefused(response, 426))).toEqual(["message"]);
  });
});

describe("browsers: the key as a subprotocol", () => {
  test("`bearer, <key>` authenticates and the server selects `bearer`, never the key", async () => {
    const token = authorizationFor(app).authorization!.replace(/^Bearer /, "");
    const feed = await connect("", { protocols: ["bearer", token] });
    expect(feed.protocol).toBe("bearer");
    const orderId = await placeOrder();
    expect((await feed.next(1))[0]).toMatchObject({ order_id: orderId, status: "accepted" });
  });
});

describe("the process", () => {
  test("close() closes the open sockets (1001) and does not wait for the clients", async () => {
    const feed = await connect();
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await feed.closed).code).toBe(1001);
  });

  test("AUTH_MODE=off: no key, the one local account's feed", async () => {
    const open = await startInProcess(isolatedEnv(servers, { AUTH_MODE: "off" }), "api");
    try {
      const feed = await connect("", {}, open);
      const response = await postOrder(open, orderBody());
      expect(response.status).toBe(201);
      const { id } = (await response.json()) as { id: string };
      expect((await feed.next(1))[0]).toMatchObject({ order_id: id, status: "accepted" });
    } finally {
      await open.close();
    }
  });

  test("Redis down: the upgrade is 503, POST /orders still answers 201 and the lost event is counted", async () => {
    const down = await startInProcess(
      isolatedEnv(servers, { REDIS_URL: `redis://127.0.0.1:${await freePort()}`, MONGO_TIMEOUT_MS: "500" }),
      "api",
    );
    try {
      const refused = await fetch(`http://127.0.0.1:${down.port}/orders/events`, {
        headers: {
          ...authorizationFor(down),
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": btoa("0123456789abcdef"),
        },
      });
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toBe("1");
      expect((await postOrder(down, orderBody())).status).toBe(201);
      await waitFor(async () => {
        const metrics = await (await down.handleOps(new Request("http://localhost/metrics"))).text();
        return /^orders_events_published_total\{result="failed",[^}]*\} 1$/m.test(metrics);
      });
    } finally {
      await down.close();
    }
  });
});

describe("on a Redis Cluster (REDIS_CLUSTER_NODES)", () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    // Masters only: the feed's scripts and its subscriber, not failover, are what is tried here.
    cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 0 });
  }, 90_000);
  afterAll(() => cluster?.stop(), 30_000);

  test("accounts on different slots: each gets its own events live and on resume", async () => {
    const clusterEnv = isolatedEnv(servers, {
      REDIS_CLUSTER_NODES: cluster.seeds,
      REDIS_URL: `redis://${cluster.nodes[0]}`,
    });
    const api = await startInProcess(clusterEnv, "api");
    const client = new Cluster(parseClusterNodes(cluster.seeds));
    try {
      const keys = createRedisKeys(clusterEnv.REDIS_KEY_PREFIX!, 1);
      const publisher = new RedisOrderEvents(client, keys, {
        retained: 10_000,
        metrics: createMetrics("actors"),
        logger: silentLogger,
      });
      const accounts = ["alpha", "bravo", "charlie", "delta"];
      const slots = await Promise.all(
        accounts.map(async (account) => Number(await client.cluster("KEYSLOT", keys.orderEvents(account)))),
      );
      expect(new Set(slots).size).toBeGreaterThan(1);
      const tokens = await Promise.all(accounts.map((account) => createApiKey(clusterEnv, account)));
      // The Cluster client opens a node's connection at its first command, and the API's fail-fast
      // connection refuses commands until then: a feed opened that early is refused (503, Retry-After).
      const live = await Promise.all(
        tokens.map((token) => waitFor(() => connect("", { headers: bearer(token) }, api).catch(() => null))),
      );
      for (const [i, account] of accounts.entries()) {
        await publisher.publish({ ...actorEvent(`order-${account}`), account });
        await publisher.publish({
          ...actorEvent(`order-${account}`, { status: "filled" }),
          account,
          at: new Date(i),
        });
      }
      for (const [i, account] of accounts.entries()) {
        const frames = await live[i]!.next(2);
        expect(frames.map((f) => [f.order_id, f.status])).toEqual([
          [`order-${account}`, "placed"],
          [`order-${account}`, "filled"],
        ]);
        const resumed = await connect(
          `?last_event_id=${frames[0]!.id}`,
          { headers: bearer(tokens[i]!) },
          api,
        );
        expect((await resumed.next(1)).map((f) => f.id)).toEqual([frames[1]!.id]);
      }
    } finally {
      client.disconnect();
      await api.close();
    }
  });
});
