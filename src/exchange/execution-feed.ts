/**
 * The simulated venue's execution feed, free of HTTP (venue-routes.ts puts it on a WebSocket). Invariants:
 * - one session at a time: a random id, seq 1, 2, 3 ... without holes over all orders; every report goes
 *   to the session log (the newest `retain` kept), and `exec_id` is `${session}-${seq}`, so a replay is
 *   the same report, byte for byte;
 * - each connection has its own cursor over the log: nothing is sent before logon; after it, every
 *   report from the cursor on, in seq order, while the socket buffers less than `windowBytes` (the rest
 *   waits in the log, resumed on drain or a short timer), so a slow client costs no memory;
 * - `drop_next` marks reports that a cursor skips the first time it passes them live; a resend, or the
 *   replay of a later logon, sends them, so the client finds the hole and heals it;
 * - a heartbeat's `last_seq` is the last seq this connection's cursor has passed (sent or skipped):
 *   every report up to it was written before the heartbeat, so a lagging connection sees no false gap,
 *   and once caught up it is the last seq generated.
 * The fill model (fill-model.ts) plans each new order's reports; a burst trades open orders one share
 * at a time, round robin. The venue never trades more than an order's open quantity.
 */
import type { ExecutionReport } from "../domain/execution.ts";
import {
  type ExecutedStep,
  execute,
  type FillSettings,
  type OrderFill,
  type PlannedReport,
  planFills,
  tradePriceCents,
} from "./fill-model.ts";
import type { ExchangeOrder } from "./port.ts";

/** The feed's view of one client socket (Bun's ServerWebSocket behind an adapter). */
export interface FeedSocket {
  /** Bun's status: bytes written, -1 queued under backpressure, 0 dropped (not sent). */
  send(text: string): number;
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/** One open socket: the WebSocket handler forwards its events here. */
export interface FeedConnection {
  /** A client frame: text, or the object a framework already parsed it into. */
  message(frame: unknown): void;
  drain(): void;
  closed(): void;
}

export interface FeedSettings extends FillSettings {
  /** Reports still to be skipped by every live cursor (a gap the clients must detect). */
  dropNext: number;
}

export interface ExecutionFeedOptions {
  settings: FillSettings;
  /** Default Math.random. */
  random?: () => number;
  /** Milliseconds since the epoch, for transact_time; default Date.now. */
  now?: () => number;
  /** A clock that never jumps, for pacing bursts; default performance.now. */
  monotonic?: () => number;
  /** Default crypto.randomUUID. */
  newSessionId?: () => string;
  /** Reports the session log keeps; default 2,000,000. */
  retain?: number;
  /** A connection is sent more only while its socket buffers less than this; default 1 MiB. */
  windowBytes?: number;
  /** Default 1,000. */
  heartbeatMs?: number;
  /** Called once per generated report (metrics). */
  onReport?: (report: ExecutionReport) => void;
}

export interface FeedStats {
  execution_reports: number;
  feed_connections: number;
  session: string;
  last_seq: number;
}

export interface FillsSnapshot {
  session: string;
  last_seq: number;
  orders: Record<string, Pick<OrderFill, "cum_qty" | "leaves_qty" | "exec_type_last">>;
}

export interface ExecutionFeed {
  /** The venue recorded a new client order id: plan and schedule its reports. */
  acknowledged(order: ExchangeOrder, venueOrderId: string): void;
  connect(socket: FeedSocket): FeedConnection;
  /** Changes the given settings (for orders acknowledged later) and returns all of them. */
  configure(patch: Partial<FeedSettings>): FeedSettings;
  settings(): FeedSettings;
  /** Schedules up to `reports` one-share trades at `perSecond`; returns how many there is open quantity for. */
  burst(reports: number, perSecond: number): number;
  /** Closes every connection; returns how many. */
  disconnectAll(): number;
  /** A new session: new id, seq from 1, empty log, no orders, no pending reports; connections closed. */
  reset(): void;
  fills(): FillsSnapshot;
  stats(): FeedStats;
  start(): void;
  close(): void;
}

const BURST_TICK_MS = 10;
const RESUME_MS = 10;

interface Connection {
  socket: FeedSocket;
  open: boolean;
  loggedOn: boolean;
  /** The next seq to send. */
  cursor: number;
  /** The highest seq the cursor has passed, sent or skipped. */
  passed: number;
  /** The last seq at logon: reports up to it are a replay, sent even when marked dropped. */
  liveFrom: number;
  resume: ReturnType<typeof setTimeout> | null;
}

/**
 * A report as the log keeps it: what cannot be derived from its seq and its order, a fraction of the
 * memory of the full report (the log holds up to `retain` of them).
 */
interface LogEntry extends ExecutedStep {
  fill: OrderFill;
  /** transact_time in ms since the epoch. */
  at: number;
}

type ClientFrame =
  | { type: "logon"; session: string | null; next_seq: number }
  | { type: "resend"; from_seq: number };

export function createExecutionFeed(options: ExecutionFeedOptions): ExecutionFeed {
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const monotonic = options.monotonic ?? (() => performance.now());
  const newSessionId = options.newSessionId ?? (() => crypto.randomUUID());
  const retain = options.retain ?? 2_000_000;
  const windowBytes = options.windowBytes ?? 1024 * 1024;
  const current: FeedSettings = { ...options.settings, dropNext: 0 };

  let session = newSessionId();
  let lastSeq = 0;
  /** A ring: seq s lives at (s - 1) % retain. */
  let log: LogEntry[] = [];
  let dropped = new Set<number>();
  const orders = new Map<string, OrderFill>();
  let open: OrderFill[] = [];
  let roundRobin = 0;
  let openQty = 0;
  let openOrders = 0;
  const fillTimers = new Set<ReturnType<typeof setTimeout>>();
  let bursts: Array<{ remaining: number; perSecond: number; startedAt: number; emitted: number }> = [];
  let burstPending = 0;
  let burstTicker: ReturnType<typeof setInterval> | null = null;
  let heartbeat: ReturnType<typeof setInterval> | null = null;
  const connections = new Set<Connection>();
  let pumpQueued = false;

  const firstRetained = () => Math.max(1, lastSeq - retain + 1);

  // Everything else in a report derives from the entry and its seq, the same way every time.
  const reportOf = (seq: number, e: LogEntry): ExecutionReport => ({
    exec_id: `${session}-${seq}`,
    session,
    seq,
    client_order_id: e.fill.client_order_id,
    venue_order_id: e.fill.venue_order_id,
    exec_type: e.exec_type,
    last_qty: e.last_qty,
    last_price_cents: e.last_price_cents,
    cum_qty: e.cum_qty,
    leaves_qty: e.leaves_qty,
    transact_time: new Date(e.at).toISOString(),
  });
  const frameOf = (seq: number) =>
    `{"type":"execution",${JSON.stringify(reportOf(seq, log[(seq - 1) % retain]!)).slice(1)}`;

  function emit(fill: OrderFill, planned: Pick<PlannedReport, "exec_type" | "qty" | "price_cents">): boolean {
    const step = execute(fill, planned);
    if (step === null) return false;
    openQty += step.leaves_qty - fill.leaves_qty;
    if (step.leaves_qty === 0) openOrders--;
    fill.cum_qty = step.cum_qty;
    fill.leaves_qty = step.leaves_qty;
    fill.exec_type_last = step.exec_type;
    const seq = ++lastSeq;
    const entry: LogEntry = {
      fill,
      exec_type: step.exec_type,
      last_qty: step.last_qty,
      last_price_cents: step.last_price_cents,
      cum_qty: step.cum_qty,
      leaves_qty: step.leaves_qty,
      at: now(),
    };
    log[(seq - 1) % retain] = entry;
    if (current.dropNext > 0) {
      current.dropNext--;
      dropped.add(seq);
    }
    options.onReport?.(reportOf(seq, entry));
    if (!pumpQueued) {
      pumpQueued = true;
      queueMicrotask(pumpAll);
    }
    return true;
  }

  function pumpAll() {
    pumpQueued = false;
    for (const connection of connections) pump(connection);
  }

  function pump(c: Connection) {
    if (!c.open || !c.loggedOn) return;
    while (c.cursor <= lastSeq) {
      const seq = c.cursor;
      // Seqs below the ring's start were overwritten: the connection can only start over with a logon.
      if (seq < firstRetained()) return refuse(c, `seq ${seq} is no longer retained`, true);
      if (c.socket.bufferedAmount() >= windowBytes) return resumeLater(c);
      if (seq > c.passed) {
        c.passed = seq;
        if (seq > c.liveFrom && dropped.has(seq)) {
          c.cursor++;
          continue;
        }
      }
      if (c.socket.send(frameOf(seq)) === 0) return resumeLater(c);
      c.cursor++;
    }
  }

  function resumeLater(c: Connection) {
    c.resume ??= setTimeout(() => {
      c.resume = null;
      pump(c);
    }, RESUME_MS);
  }

  function refuse(c: Connection, reason: string, close: boolean) {
    c.socket.send(JSON.stringify({ type: "reject", reason }));
    if (close) disconnect(c, 1008, reason.slice(0, 120));
  }

  function forget(c: Connection): boolean {
    if (!c.open) return false;
    c.open = false;
    connections.delete(c);
    if (c.resume) clearTimeout(c.resume);
    return true;
  }

  function disconnect(c: Connection, code: number, reason: string) {
    if (forget(c)) c.socket.close(code, reason);
  }

  function onFrame(c: Connection, raw: unknown) {
    const frame = readFrame(raw);
    if (typeof frame === "string") return refuse(c, frame, false);
    if (frame.type === "logon") {
      const next = frame.session === session ? frame.next_seq : 1;
      if (next < firstRetained()) return refuse(c, `seq ${next} is no longer retained`, true);
      if (next > lastSeq + 1) return refuse(c, `next_seq ${next} is past the last seq ${lastSeq}`, true);
      c.socket.send(JSON.stringify({ type: "logon", session, next_seq: next, last_seq: lastSeq }));
      Object.assign(c, { loggedOn: true, cursor: next, passed: next - 1, liveFrom: lastSeq });
      return pump(c);
    }
    if (!c.loggedOn) return refuse(c, "resend before logon", false);
    if (frame.from_seq < firstRetained())
      return refuse(c, `seq ${frame.from_seq} is no longer retained`, true);
    if (frame.from_seq > lastSeq + 1)
      return refuse(c, `from_seq ${frame.from_seq} is past the last seq`, false);
    c.cursor = frame.from_seq;
    c.passed = Math.max(c.passed, frame.from_seq - 1);
    pump(c);
  }

  function scheduleFills(fill: OrderFill, plan: PlannedReport[], index: number) {
    const planned = plan[index];
    if (planned === undefined) return;
    const timer = setTimeout(() => {
      fillTimers.delete(timer);
      emit(fill, planned);
      scheduleFills(fill, plan, index + 1);
    }, planned.delayMs);
    fillTimers.add(timer);
  }

  function nextOpen(): OrderFill | undefined {
    while (open.length > 0) {
      if (roundRobin >= open.length) roundRobin = 0;
      const fill = open[roundRobin]!;
      if (fill.leaves_qty > 0) {
        roundRobin++;
        return fill;
      }
      open[roundRobin] = open[open.length - 1]!;
      open.pop();
    }
    return undefined;
  }

  function burstTick() {
    const at = monotonic();
    for (const burst of bursts) {
      const due = Math.min(
        burst.remaining,
        Math.floor((burst.perSecond * (at - burst.startedAt)) / 1000) - burst.emitted,
      );
      for (let i = 0; i < due; i++) {
        const fill = nextOpen();
        if (fill === undefined) break;
        emit(fill, { exec_type: "trade", qty: 1, price_cents: tradePriceCents(fill, random) });
        burst.emitted++;
        burst.remaining--;
        burstPending--;
      }
      // Planned fills may have used up the open quantity the burst counted on.
      if (openQty === 0) {
        burstPending -= burst.remaining;
        burst.remaining = 0;
      }
    }
    bursts = bursts.filter((b) => b.remaining > 0);
    if (bursts.length === 0) stopBursts();
  }

  function stopBursts() {
    if (burstTicker) clearInterval(burstTicker);
    burstTicker = null;
    bursts = [];
    burstPending = 0;
  }

  function closeAll(code: number, reason: string): number {
    const all = [...connections];
    for (const c of all) disconnect(c, code, reason);
    return all.length;
  }

  return {
    acknowledged(order, venueOrderId) {
      const fill: OrderFill = {
        client_order_id: order.client_order_id,
        venue_order_id: venueOrderId,
        type: order.type,
        instrument: order.instrument,
        limit_price_cents: order.limit_price_cents,
        quantity: order.quantity,
        cum_qty: 0,
        leaves_qty: order.quantity,
        exec_type_last: null,
      };
      orders.set(fill.client_order_id, fill);
      // Filled orders leave `open` lazily (nextOpen); without bursts that never happens, so compact here.
      if (open.length > 2 * openOrders + 1_024) {
        open = open.filter((f) => f.leaves_qty > 0);
        roundRobin = 0;
      }
      open.push(fill);
      openOrders++;
      openQty += fill.leaves_qty;
      scheduleFills(fill, planFills(order, current, random), 0);
    },
    connect(socket) {
      const c: Connection = {
        socket,
        open: true,
        loggedOn: false,
        cursor: 1,
        passed: 0,
        liveFrom: 0,
        resume: null,
      };
      connections.add(c);
      return {
        message: (frame) => c.open && onFrame(c, frame),
        drain: () => pump(c),
        closed: () => void forget(c),
      };
    },
    configure(patch) {
      const { fillsPerOrder, fillDelayMs, limitUnfilledRate, dropNext } = patch;
      if (fillsPerOrder !== undefined)
        current.fillsPerOrder = atLeastZero("fillsPerOrder", fillsPerOrder, true);
      if (fillDelayMs !== undefined) current.fillDelayMs = atLeastZero("fillDelayMs", fillDelayMs, false);
      if (limitUnfilledRate !== undefined) {
        if (!(limitUnfilledRate >= 0 && limitUnfilledRate <= 1)) {
          throw new RangeError(`limitUnfilledRate must be within [0, 1], got ${limitUnfilledRate}`);
        }
        current.limitUnfilledRate = limitUnfilledRate;
      }
      if (dropNext !== undefined) current.dropNext = atLeastZero("dropNext", dropNext, true);
      return { ...current };
    },
    settings: () => ({ ...current }),
    burst(reports, perSecond) {
      const scheduled = Math.max(0, Math.min(reports, openQty - burstPending));
      if (scheduled === 0) return 0;
      bursts.push({ remaining: scheduled, perSecond, startedAt: monotonic(), emitted: 0 });
      burstPending += scheduled;
      burstTicker ??= setInterval(burstTick, BURST_TICK_MS);
      return scheduled;
    },
    disconnectAll: () => closeAll(1001, "disconnected by the venue"),
    reset() {
      for (const timer of fillTimers) clearTimeout(timer);
      fillTimers.clear();
      stopBursts();
      orders.clear();
      open = [];
      openQty = 0;
      openOrders = 0;
      closeAll(1012, "the venue started a new session");
      session = newSessionId();
      lastSeq = 0;
      log = [];
      dropped = new Set();
      current.dropNext = 0;
    },
    fills: () => ({
      session,
      last_seq: lastSeq,
      orders: Object.fromEntries(
        [...orders.values()].map((f) => [
          f.client_order_id,
          { cum_qty: f.cum_qty, leaves_qty: f.leaves_qty, exec_type_last: f.exec_type_last },
        ]),
      ),
    }),
    stats: () => ({
      execution_reports: lastSeq,
      feed_connections: connections.size,
      session,
      last_seq: lastSeq,
    }),
    start() {
      heartbeat ??= setInterval(() => {
        for (const c of connections) {
          if (c.loggedOn) c.socket.send(JSON.stringify({ type: "heartbeat", session, last_seq: c.passed }));
        }
      }, options.heartbeatMs ?? 1_000);
    },
    close() {
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = null;
      for (const timer of fillTimers) clearTimeout(timer);
      fillTimers.clear();
      stopBursts();
      closeAll(1001, "the venue is shutting down");
    },
  };
}

function atLeastZero(name: string, value: number, integer: boolean): number {
  if (!(Number.isFinite(value) && value >= 0 && (!integer || Number.isInteger(value)))) {
    throw new RangeError(`${name} must be ${integer ? "an integer" : "a finite number"} >= 0, got ${value}`);
  }
  return value;
}

/** A client frame, or why it is not one. */
function readFrame(raw: unknown): ClientFrame | string {
  let value = raw;
  if (typeof raw === "string") {
    try {
      value = JSON.parse(raw);
    } catch {
      return "not a JSON frame";
    }
  }
  if (typeof value !== "object" || value === null) return "expected a JSON object with a type";
  const frame = value as Record<string, unknown>;
  const positive = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 1;
  if (frame.type === "logon") {
    if (!(frame.session === null || typeof frame.session === "string"))
      return "logon: session must be a string or null";
    if (!positive(frame.next_seq)) return "logon: next_seq must be an integer >= 1";
    return { type: "logon", session: frame.session, next_seq: frame.next_seq as number };
  }
  if (frame.type === "resend") {
    if (!positive(frame.from_seq)) return "resend: from_seq must be an integer >= 1";
    return { type: "resend", from_seq: frame.from_seq as number };
  }
  return 'type must be "logon" or "resend"';
}
