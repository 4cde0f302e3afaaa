import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { loadConfig } from "../../src/config.ts";
import type { ExecutionReport } from "../../src/domain/execution.ts";
import {
  createExecutionFeed,
  type ExecutionFeedOptions,
  type FeedSocket,
} from "../../src/exchange/execution-feed.ts";
import type { ExchangeOrder } from "../../src/exchange/port.ts";
import { silentLogger } from "../../src/logger.ts";
import { startExchange } from "../../src/process/exchange.ts";
import type { RunningProcess } from "../../src/process/lifecycle.ts";
import {
  burstFeed,
  configureFeed,
  disconnectFeed,
  resetVenue,
  VENUE_ADMIN_TOKEN,
  venueFills,
  venueStats,
} from "../support/venue-admin.ts";
import { waitFor } from "../support/wait-for.ts";

const order = (id: string, overrides: Partial<ExchangeOrder> = {}): ExchangeOrder => ({
  client_order_id: id,
  type: "market",
  side: "buy",
  instrument: "US0378331005",
  limit_price_cents: null,
  quantity: 4,
  ...overrides,
});

type Frame = Record<string, unknown> & { type: string };

/** A socket that records what it is sent; `holdBytes` makes it keep every byte buffered, like a stalled client. */
class FakeSocket implements FeedSocket {
  sent: string[] = [];
  buffered = 0;
  holdBytes = false;
  closedWith: { code: number; reason: string } | null = null;
  send(text: string): number {
    if (this.closedWith) return 0;
    this.sent.push(text);
    if (this.holdBytes) this.buffered += text.length;
    return text.length;
  }
  bufferedAmount() {
    return this.buffered;
  }
  close(code: number, reason: string) {
    this.closedWith = { code, reason };
  }
  frames(): Frame[] {
    return this.sent.map((text) => JSON.parse(text) as Frame);
  }
  seqs(): number[] {
    return this.frames()
      .filter((f) => f.type === "execution")
      .map((f) => f.seq as number);
  }
}

function coreFeed(overrides: Partial<ExecutionFeedOptions> = {}) {
  let sessions = 0;
  return createExecutionFeed({
    settings: { fillsPerOrder: 2, fillDelayMs: 0, limitUnfilledRate: 0 },
    random: () => 0.5,
    now: () => Date.parse("2026-01-02T03:04:05.000Z"),
    newSessionId: () => `s${++sessions}`,
    ...overrides,
  });
}

const logon = (session: string | null, next_seq: number) => ({ type: "logon", session, next_seq });

describe("execution feed core", () => {
  test("sends nothing before logon, then replays from the cursor and follows live", async () => {
    const feed = coreFeed();
    feed.acknowledged(order("a"), "v-a");
    await waitFor(() => feed.stats().last_seq === 2);
    const socket = new FakeSocket();
    const connection = feed.connect(socket);
    expect(socket.sent).toEqual([]);
    connection.message(logon("an-old-session", 7));
    expect(socket.frames()[0]).toEqual({ type: "logon", session: "s1", next_seq: 1, last_seq: 2 });
    expect(socket.seqs()).toEqual([1, 2]);
    feed.acknowledged(order("b", { quantity: 1 }), "v-b");
    await waitFor(() => socket.seqs().length === 3);
    const reports = socket.frames().filter((f) => f.type === "execution");
    expect(reports[0]).toEqual({
      type: "execution",
      exec_id: "s1-1",
      session: "s1",
      seq: 1,
      client_order_id: "a",
      venue_order_id: "v-a",
      exec_type: "trade",
      last_qty: 2,
      last_price_cents: reports[0]!.last_price_cents,
      cum_qty: 2,
      leaves_qty: 2,
      transact_time: "2026-01-02T03:04:05.000Z",
    });
    expect(reports.map((r) => [r.client_order_id, r.last_qty, r.cum_qty, r.leaves_qty])).toEqual([
      ["a", 2, 2, 2],
      ["a", 2, 4, 0],
      ["b", 1, 1, 0],
    ]);
    expect(feed.fills()).toEqual({
      session: "s1",
      last_seq: 3,
      orders: {
        a: { cum_qty: 4, leaves_qty: 0, exec_type_last: "trade" },
        b: { cum_qty: 1, leaves_qty: 0, exec_type_last: "trade" },
      },
    });
    feed.close();
  });

  test("a logon of the current session resumes at next_seq, byte for byte; a seq past the last is refused", async () => {
    const feed = coreFeed();
    feed.acknowledged(order("a", { quantity: 3 }), "v-a");
    feed.acknowledged(order("b", { quantity: 3 }), "v-b");
    await waitFor(() => feed.stats().last_seq === 4);
    const first = new FakeSocket();
    feed.connect(first).message(logon(null, 1));
    const second = new FakeSocket();
    feed.connect(second).message(JSON.stringify(logon("s1", 3)));
    expect(second.frames()[0]).toEqual({ type: "logon", session: "s1", next_seq: 3, last_seq: 4 });
    expect(second.sent.slice(1)).toEqual(first.sent.slice(3));
    const third = new FakeSocket();
    feed.connect(third).message(logon("s1", 6));
    expect(third.frames()[0]).toMatchObject({ type: "reject" });
    expect(third.closedWith?.code).toBe(1008);
    feed.close();
  });

  test("an unparseable or unknown frame is rejected and the connection stays", () => {
    const feed = coreFeed();
    const socket = new FakeSocket();
    const connection = feed.connect(socket);
    for (const frame of [
      "{not json",
      42,
      { type: "subscribe" },
      logon(null, 0),
      { type: "resend", from_seq: 1 },
    ]) {
      connection.message(frame);
    }
    expect(socket.frames().map((f) => f.type)).toEqual(["reject", "reject", "reject", "reject", "reject"]);
    expect(socket.frames()[4]!.reason).toBe("resend before logon");
    expect(socket.closedWith).toBeNull();
    connection.message(logon(null, 1));
    expect(socket.frames()[5]).toEqual({ type: "logon", session: "s1", next_seq: 1, last_seq: 0 });
    feed.close();
  });

  test("a seq the log no longer retains is refused and the connection closed", async () => {
    const feed = coreFeed({
      retain: 3,
      settings: { fillsPerOrder: 5, fillDelayMs: 0, limitUnfilledRate: 0 },
    });
    feed.acknowledged(order("a", { quantity: 5 }), "v-a");
    await waitFor(() => feed.stats().last_seq === 5);
    const old = new FakeSocket();
    feed.connect(old).message(logon(null, 1));
    expect(old.frames()).toEqual([{ type: "reject", reason: "seq 1 is no longer retained" }]);
    expect(old.closedWith?.code).toBe(1008);
    const recent = new FakeSocket();
    const connection = feed.connect(recent);
    connection.message(logon("s1", 3));
    expect(recent.seqs()).toEqual([3, 4, 5]);
    connection.message({ type: "resend", from_seq: 2 });
    expect(recent.closedWith?.code).toBe(1008);
    feed.close();
  });

  test("drop_next leaves reports out of the live feed; a resend fills the hole; heartbeats show the tail", async () => {
    const feed = coreFeed({
      heartbeatMs: 20,
      settings: { fillsPerOrder: 3, fillDelayMs: 0, limitUnfilledRate: 0 },
    });
    feed.start();
    const socket = new FakeSocket();
    const connection = feed.connect(socket);
    connection.message(logon(null, 1));
    expect(feed.configure({ dropNext: 2 }).dropNext).toBe(2);
    feed.acknowledged(order("a", { quantity: 3 }), "v-a");
    feed.acknowledged(order("b", { quantity: 3 }), "v-b");
    await waitFor(() => feed.stats().last_seq === 6);
    await waitFor(() => socket.frames().some((f) => f.type === "heartbeat" && f.last_seq === 6));
    expect(socket.seqs()).toEqual([3, 4, 5, 6]);
    expect(feed.settings().dropNext).toBe(0);
    connection.message({ type: "resend", from_seq: 1 });
    expect(socket.seqs()).toEqual([3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
    // A later logon replays the dropped reports: only live delivery skips them.
    const late = new FakeSocket();
    feed.connect(late).message(logon(null, 1));
    expect(late.seqs()).toEqual([1, 2, 3, 4, 5, 6]);
    feed.configure({ dropNext: 1 });
    feed.acknowledged(order("c", { quantity: 1 }), "v-c");
    await waitFor(() => socket.frames().some((f) => f.type === "heartbeat" && f.last_seq === 7));
    expect(socket.seqs().at(-1)).toBe(6);
    feed.close();
  });

  test("a socket that buffers the window gets nothing more until it drains", async () => {
    const feed = coreFeed({
      windowBytes: 1_000,
      settings: { fillsPerOrder: 0, fillDelayMs: 0, limitUnfilledRate: 0 },
    });
    const socket = new FakeSocket();
    socket.holdBytes = true;
    const connection = feed.connect(socket);
    connection.message(logon(null, 1));
    feed.acknowledged(order("a", { quantity: 100 }), "v-a");
    expect(feed.burst(100, 1_000_000)).toBe(100);
    await waitFor(() => feed.stats().last_seq === 100);
    // Long enough for a few resume timers to find the window still full.
    await Bun.sleep(30);
    const sentWhileFull = socket.seqs().length;
    expect(sentWhileFull).toBeGreaterThan(0);
    expect(sentWhileFull).toBeLessThan(10);
    socket.holdBytes = false;
    socket.buffered = 0;
    connection.drain();
    expect(socket.seqs()).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    feed.close();
  });

  test("a burst trades open orders round robin, one share at a time, and planned fills shrink to what is left", async () => {
    const feed = coreFeed({ settings: { fillsPerOrder: 0, fillDelayMs: 0, limitUnfilledRate: 0 } });
    feed.acknowledged(order("a", { quantity: 3 }), "v-a");
    feed.acknowledged(order("b", { quantity: 2 }), "v-b");
    expect(feed.burst(4, 1_000_000)).toBe(4);
    expect(feed.burst(10, 1_000_000)).toBe(1);
    expect(feed.burst(1, 1_000_000)).toBe(0);
    await waitFor(() => feed.stats().last_seq === 5);
    const socket = new FakeSocket();
    feed.connect(socket).message(logon(null, 1));
    const trades = socket.frames().filter((f) => f.type === "execution");
    expect(trades.map((t) => [t.client_order_id, t.last_qty])).toEqual([
      ["a", 1],
      ["b", 1],
      ["a", 1],
      ["b", 1],
      ["a", 1],
    ]);
    // One planned trade of 5 shares, due well after the burst's first tick has traded 3 of them.
    feed.configure({ fillsPerOrder: 1, fillDelayMs: 300 });
    feed.acknowledged(order("c", { quantity: 5 }), "v-c");
    expect(feed.burst(3, 1_000_000)).toBe(3);
    await waitFor(() => feed.fills().orders.c?.leaves_qty === 0);
    expect(feed.stats().last_seq).toBe(9);
    expect(socket.frames().at(-1)).toMatchObject({
      client_order_id: "c",
      last_qty: 2,
      cum_qty: 5,
      leaves_qty: 0,
    });
    feed.close();
  });

  test("reset starts a new session at seq 1 with an empty log and closes every connection", async () => {
    const feed = coreFeed();
    const sockets = [new FakeSocket(), new FakeSocket()];
    feed.connect(sockets[0]!).message(logon(null, 1));
    feed.connect(sockets[1]!);
    feed.acknowledged(order("a"), "v-a");
    await waitFor(() => feed.stats().last_seq === 2);
    feed.reset();
    expect(sockets.map((s) => s.closedWith?.code)).toEqual([1012, 1012]);
    expect(feed.stats()).toEqual({ execution_reports: 0, feed_connections: 0, session: "s2", last_seq: 0 });
    expect(feed.fills().orders).toEqual({});
    const socket = new FakeSocket();
    feed.connect(socket).message(logon("s1", 3));
    expect(socket.frames()).toEqual([{ type: "logon", session: "s2", next_seq: 1, last_seq: 0 }]);
    expect(feed.disconnectAll()).toBe(1);
    expect(socket.closedWith?.code).toBe(1001);
    feed.close();
  });

  test("settings out of range are refused", () => {
    const feed = coreFeed();
    expect(() => feed.configure({ limitUnfilledRate: 2 })).toThrow(RangeError);
    expect(() => feed.configure({ fillsPerOrder: 1.5 })).toThrow(RangeError);
    expect(() => feed.configure({ fillDelayMs: -1 })).toThrow(RangeError);
    expect(feed.settings()).toEqual({ fillsPerOrder: 2, fillDelayMs: 0, limitUnfilledRate: 0, dropNext: 0 });
  });
});

/** A WebSocket client of the feed that keeps every frame, raw and parsed. */
async function feedClient(port: number) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/executions`);
  const raw: string[] = [];
  let closed: { code: number; reason: string } | null = null;
  ws.onmessage = (event) => raw.push(String(event.data));
  ws.onclose = (event) => {
    closed = { code: event.code, reason: event.reason };
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const frames = () => raw.map((text) => JSON.parse(text) as Frame);
  const executions = () => frames().filter((f) => f.type === "execution") as unknown as ExecutionReport[];
  return {
    ws,
    raw,
    frames,
    executions,
    closed: () => closed,
    send: (frame: unknown) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
    /** Waits for the first frame of `type` from index `from` on. */
    next: (type: string, from = 0) =>
      waitFor(
        () =>
          frames()
            .slice(from)
            .find((f) => f.type === type),
        { message: `a ${type} frame` },
      ),
  };
}

describe("the exchange process's execution feed over a real WebSocket", () => {
  let exchange: RunningProcess;
  let venue: { baseUrl: string };
  let port = 0;
  const clients: Array<{ ws: WebSocket }> = [];

  const connect = async () => {
    const client = await feedClient(port);
    clients.push(client);
    return client;
  };

  const place = async (id: string, overrides: Partial<ExchangeOrder> = {}) => {
    const response = await fetch(`${venue.baseUrl}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(order(id, overrides)),
    });
    expect(response.status).toBe(201);
    return (await response.json()) as { venue_order_id: string; duplicate: boolean };
  };

  beforeAll(async () => {
    const env = {
      PORT: "0",
      OPS_PORT: "0",
      EXCHANGE_LATENCY_MS: "0",
      EXCHANGE_FAILURE_RATE: "0",
      EXCHANGE_ADMIN_TOKEN: VENUE_ADMIN_TOKEN,
      EXCHANGE_FILL_DELAY_MS: "5",
      EXCHANGE_LIMIT_UNFILLED_RATE: "0",
    };
    exchange = await startExchange(loadConfig(env), silentLogger);
    port = exchange.port!;
    venue = { baseUrl: `http://127.0.0.1:${port}` };
  });

  afterAll(async () => {
    await exchange.close();
  });

  beforeEach(async () => {
    for (const client of clients.splice(0)) client.ws.close();
    await resetVenue(venue);
    await configureFeed(venue, {
      fills_per_order: 2,
      fill_delay_ms: 5,
      limit_unfilled_rate: 0,
      drop_next: 0,
    });
  });

  test("after logon, a new order's reports arrive live; a duplicate submission adds none", async () => {
    const client = await connect();
    client.send(logon(null, 1));
    const answer = await client.next("logon");
    const session = (await venueStats(venue)).session;
    expect(answer).toEqual({ type: "logon", session: session!, next_seq: 1, last_seq: 0 });
    const ack = await place("live-1", { quantity: 5 });
    await waitFor(() => client.executions().length === 2);
    expect((await place("live-1", { quantity: 5 })).duplicate).toBe(true);
    const [first, second] = client.executions();
    expect(first).toMatchObject({
      exec_id: `${session}-1`,
      session,
      seq: 1,
      client_order_id: "live-1",
      venue_order_id: ack.venue_order_id,
      exec_type: "trade",
      last_qty: 3,
      cum_qty: 3,
      leaves_qty: 2,
    });
    expect(second).toMatchObject({ exec_id: `${session}-2`, seq: 2, last_qty: 2, cum_qty: 5, leaves_qty: 0 });
    expect(Number.isNaN(Date.parse(second!.transact_time))).toBe(false);
    // The duplicate must not start a second plan: nothing more arrives within many fill delays.
    await Bun.sleep(50);
    expect(client.executions()).toHaveLength(2);
    expect(await venueFills(venue)).toEqual({
      session: session!,
      last_seq: 2,
      orders: { "live-1": { cum_qty: 5, leaves_qty: 0, exec_type_last: "trade" } },
    });
    expect(await venueStats(venue)).toMatchObject({ execution_reports: 2, feed_connections: 1, last_seq: 2 });
    const metrics = await (await exchange.handleOps(new Request("http://venue/metrics"))).text();
    expect(metrics).toMatch(/venue_execution_reports_total\{[^}]*exec_type="trade"[^}]*\} [1-9]/);
  });

  test("nothing is sent before logon, an unparseable frame is rejected, and heartbeats follow logon", async () => {
    const client = await connect();
    await place("quiet-1", { quantity: 2 });
    await waitFor(async () => (await venueStats(venue)).last_seq === 2);
    expect(client.raw).toEqual([]);
    client.send("{ this is not json");
    expect(await client.next("reject")).toMatchObject({ reason: expect.any(String) });
    client.send(logon(null, 1));
    await waitFor(() => client.executions().length === 2);
    const heartbeat = await waitFor(() => client.frames().find((f) => f.type === "heartbeat"), {
      timeoutMs: 3_000,
    });
    expect(heartbeat).toEqual({
      type: "heartbeat",
      session: (await venueStats(venue)).session!,
      last_seq: 2,
    });
    expect(client.closed()).toBeNull();
  });

  test("a logon with the current session and a seq replays from that seq, byte for byte", async () => {
    const live = await connect();
    live.send(logon(null, 1));
    await place("replay-1", { quantity: 4 });
    await place("replay-2", { quantity: 4 });
    await waitFor(() => live.executions().length === 4);
    const { session } = await venueStats(venue);
    const replay = await connect();
    replay.send(logon(session!, 3));
    expect(await replay.next("logon")).toEqual({
      type: "logon",
      session: session!,
      next_seq: 3,
      last_seq: 4,
    });
    await waitFor(() => replay.executions().length === 2);
    const rawExecutions = (c: { raw: string[] }) =>
      c.raw.filter((text) => text.startsWith('{"type":"execution"'));
    expect(rawExecutions(replay)).toEqual(rawExecutions(live).slice(2));
  });

  test("an injected gap reaches the client as a hole that a resend fills", async () => {
    const client = await connect();
    client.send(logon(null, 1));
    await client.next("logon");
    expect((await configureFeed(venue, { drop_next: 1 })).drop_next).toBe(1);
    await place("gap-1", { quantity: 4 });
    await waitFor(async () => (await venueStats(venue)).last_seq === 2);
    await waitFor(() => client.executions().length === 1);
    expect(client.executions().map((r) => r.seq)).toEqual([2]);
    client.send({ type: "resend", from_seq: 1 });
    await waitFor(() => client.executions().length === 3);
    expect(client.executions().map((r) => r.seq)).toEqual([2, 1, 2]);
    expect(client.executions()[0]).toEqual(client.executions()[2]!);
  });

  test("the admin disconnect closes every feed connection and counts them", async () => {
    const active = await connect();
    active.send(logon(null, 1));
    await active.next("logon");
    const standby = await connect();
    await waitFor(async () => (await venueStats(venue)).feed_connections === 2);
    expect(await disconnectFeed(venue)).toBe(2);
    await waitFor(() => active.closed() !== null && standby.closed() !== null);
    expect((await venueStats(venue)).feed_connections).toBe(0);
  });

  test("a burst sends the scheduled one-share trades in seq order, round robin over open orders", async () => {
    await configureFeed(venue, { fills_per_order: 0 });
    for (const id of ["burst-1", "burst-2", "burst-3"]) await place(id, { quantity: 1_000 });
    const client = await connect();
    client.send(logon(null, 1));
    await client.next("logon");
    expect(await burstFeed(venue, { reports: 2_500, per_second: 100_000 })).toBe(2_500);
    expect(await burstFeed(venue, { reports: 1_000, per_second: 100_000 })).toBe(500);
    await waitFor(() => client.executions().length === 3_000, { timeoutMs: 10_000 });
    const seqs = client.executions().map((r) => r.seq);
    expect(seqs).toEqual(Array.from({ length: 3_000 }, (_, i) => i + 1));
    expect(client.executions().every((r) => r.last_qty === 1 && r.exec_type === "trade")).toBe(true);
    const { orders } = await venueFills(venue);
    expect(Object.values(orders).map((o) => [o.cum_qty, o.leaves_qty])).toEqual([
      [1_000, 0],
      [1_000, 0],
      [1_000, 0],
    ]);
  });

  test("reset starts a new session: the connection closes and a logon of the old session starts at 1", async () => {
    const client = await connect();
    client.send(logon(null, 1));
    await place("reset-1", { quantity: 2 });
    await waitFor(() => client.executions().length === 2);
    const old = (await venueStats(venue)).session!;
    await resetVenue(venue);
    await waitFor(() => client.closed() !== null);
    const again = await connect();
    again.send(logon(old, 3));
    const answer = await again.next("logon");
    expect(answer.session).not.toBe(old);
    expect(answer).toMatchObject({ next_seq: 1, last_seq: 0 });
    await place("reset-2", { quantity: 1 });
    await waitFor(() => again.executions().length === 1);
    expect(again.executions()[0]).toMatchObject({ seq: 1, exec_id: `${answer.session}-1` });
  });

  test("the feed's admin routes need the admin token and name the invalid field", async () => {
    const post = (path: string, body: unknown, token: string | null = VENUE_ADMIN_TOKEN) =>
      fetch(`${venue.baseUrl}/admin/${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify(body),
      });
    expect((await post("feed", {}, null)).status).toBe(401);
    expect((await post("feed/disconnect", {}, null)).status).toBe(401);
    expect((await post("feed/burst", { reports: 1, per_second: 1 }, null)).status).toBe(401);
    const badRate = await post("feed", { limit_unfilled_rate: 1.5 });
    expect(badRate.status).toBe(422);
    expect(await badRate.json()).toMatchObject({ errors: [{ field: "limit_unfilled_rate" }] });
    const badBurst = await post("feed/burst", { reports: 0, per_second: 10 });
    expect(badBurst.status).toBe(422);
    expect(await badBurst.json()).toMatchObject({ errors: [{ field: "reports" }] });
    expect(await configureFeed(venue)).toEqual({
      fills_per_order: 2,
      fill_delay_ms: 5,
      limit_unfilled_rate: 0,
      drop_next: 0,
    });
  });
});
