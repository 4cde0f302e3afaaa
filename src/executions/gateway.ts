/**
 * The execution gateway: reads the venue's execution feed (a WebSocket) and appends every report, raw,
 * to the executions streams, in sequence, exactly once per sequence number. It never waits on MongoDB:
 * its only store is Redis (src/adapters/execution-log.ts), so a slow MongoDB cannot back the socket up.
 *
 * - One gateway per venue session is active: it holds a lease in Redis and renews it every third of
 *   its life; the others wait as standbys and take the lease when it expires (the active one died or
 *   lost Redis). The append script checks the lease, so a gateway that lost it cannot append.
 * - It logs on with the last sequence number Redis recorded, so the venue replays what was not
 *   appended yet (a crash, a takeover, a Redis that lost its data: nothing is skipped).
 * - A hole in the sequence (the venue skipped reports, or Redis recorded less than this gateway
 *   thought) is answered with a resend request from the first missing number; reports past the hole
 *   are dropped until it is filled, so the streams never hold a hole either. A quiet feed whose
 *   heartbeat names a later number than the last report seen is a hole at the tail.
 * - A dropped or stale connection (no frame for STALE_MS) is opened again with backoff.
 * - Redis's record is checked against what this gateway appended at every lease renewal: a Redis that
 *   lost data (restarted empty) is replayed into from the venue even when no new report arrives.
 */
import type { AppendResult } from "../adapters/execution-log.ts";
import type { ExecutionReport } from "../domain/execution.ts";
import type { Logger } from "../logger.ts";
import { type BackoffPolicy, backoffDelay } from "../support/backoff.ts";

export interface ExecutionLogPort {
  acquireLease(token: string, ttlMs: number): Promise<boolean>;
  renewLease(token: string, ttlMs: number): Promise<boolean>;
  releaseLease(token: string): Promise<void>;
  position(): Promise<{ session: string | null; seq: number }>;
  append(token: string, reports: readonly { report: ExecutionReport; raw: string }[]): Promise<AppendResult>;
}

export interface GatewayObserver {
  received?(result: "appended" | "duplicate" | "gap", count: number): void;
  gapFound?(): void;
  gapOpenSeconds?(seconds: number): void;
  connected?(reason: string): void;
  active?(active: boolean): void;
  /** Whether this gateway is logged on to the venue's feed (told at every tick, and at close). */
  loggedOn?(loggedOn: boolean): void;
  lastSequence?(seq: number): void;
}

export interface GatewayOptions {
  feedUrl: string;
  log: ExecutionLogPort;
  leaseMs: number;
  reconnect: BackoffPolicy;
  logger: Logger;
  observer?: GatewayObserver;
}

/** No frame (a heartbeat comes every second) for this long: the connection is dead. */
const STALE_MS = 5_000;
/** A hole not filled this long after the last resend request is asked for again. */
const RESEND_AGAIN_MS = 2_000;
/** The most reports one append script takes. */
const MAX_APPEND_BATCH = 1_000;
/** A heartbeat ahead of the last report means a hole at the tail only once the feed was quiet this long. */
const QUIET_MS = 1_500;

type Frame = { type?: string } & Partial<ExecutionReport> & {
    next_seq?: number;
    last_seq?: number;
    reason?: string;
  };

export function createExecutionGateway(options: GatewayOptions) {
  const { log, logger, observer } = options;
  const token = crypto.randomUUID();
  let active = false;
  let closed = false;
  let socket: WebSocket | null = null;
  let session: string | null = null;
  let expected = 1;
  let lastFrameAt = 0;
  let lastReportAt = 0;
  let gapOpenSince: number | null = null;
  let resendAskedAt = 0;
  let failures = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let renewedAt = 0;
  let waiting: { report: ExecutionReport; raw: string }[] = [];
  /** The last sequence number Redis confirmed for this connection's session (0 before the first). */
  let confirmedSeq = 0;
  let appending = false;

  function setActive(value: boolean): void {
    if (active === value) return;
    active = value;
    observer?.active?.(value);
    logger.warn(value ? "gateway active: reading the venue feed" : "gateway on standby", { token });
  }

  function disconnect(): void {
    const current = socket;
    socket = null;
    session = null;
    // What waits was read from the closed connection: the next logon replays it from Redis's record.
    waiting = [];
    current?.close();
  }

  function scheduleConnect(reason: string): void {
    if (closed || !active || reconnectTimer) return;
    const delay = failures === 0 ? 0 : backoffDelay(failures, options.reconnect);
    failures += 1;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void connect(reason);
    }, delay);
  }

  /** Drops the connection and opens a new one from what Redis recorded. */
  function restart(reason: string): void {
    disconnect();
    scheduleConnect(reason);
  }

  async function connect(reason: string): Promise<void> {
    if (closed || !active) return;
    let position: { session: string | null; seq: number };
    try {
      position = await log.position();
    } catch (error) {
      logger.warn("reading the gateway position from Redis failed; retrying", { error });
      scheduleConnect(reason);
      return;
    }
    observer?.connected?.(reason);
    const ws = new WebSocket(options.feedUrl);
    socket = ws;
    lastFrameAt = Date.now();
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "logon", session: position.session, next_seq: position.seq + 1 }));
    };
    ws.onmessage = (event) => {
      if (socket === ws) onFrame(String(event.data));
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      logger.warn("venue feed closed; reconnecting");
      scheduleConnect("closed");
    };
    ws.onerror = () => {
      if (socket !== ws) return;
      logger.warn("venue feed failed; reconnecting");
    };
  }

  function askResend(from: number): void {
    const now = Date.now();
    if (gapOpenSince === null) {
      gapOpenSince = now;
      observer?.gapFound?.();
    }
    if (now - resendAskedAt < RESEND_AGAIN_MS) return;
    resendAskedAt = now;
    socket?.send(JSON.stringify({ type: "resend", from_seq: from }));
    logger.warn("sequence gap in the venue feed; resend requested", { from_seq: from, session });
  }

  function onFrame(raw: string): void {
    lastFrameAt = Date.now();
    let frame: Frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      logger.error("unparseable frame on the venue feed", { frame: raw.slice(0, 200) });
      return;
    }
    if (frame.type === "logon") {
      session = frame.session ?? null;
      confirmedSeq = 0;
      expected = frame.next_seq ?? 1;
      failures = 0;
      logger.info("logged on to the venue feed", { session, next_seq: expected, last_seq: frame.last_seq });
    } else if (frame.type === "execution") {
      onReport(frame as ExecutionReport, raw);
    } else if (frame.type === "heartbeat") {
      if (frame.session !== session) restart("session");
      else if ((frame.last_seq ?? 0) >= expected && Date.now() - lastReportAt > QUIET_MS) askResend(expected);
    } else if (frame.type === "reject") {
      logger.error("the venue rejected the feed request", { reason: frame.reason });
      restart("rejected");
    }
  }

  function onReport(report: ExecutionReport, raw: string): void {
    lastReportAt = Date.now();
    if (report.session !== session) return;
    if (report.seq < expected) {
      observer?.received?.("duplicate", 1);
      return;
    }
    if (report.seq > expected) {
      observer?.received?.("gap", 1);
      askResend(expected);
      return;
    }
    expected = report.seq + 1;
    gapOpenSince = null;
    resendAskedAt = 0;
    waiting.push({ report, raw });
    if (!appending) void appendWaiting();
  }

  /**
   * One append in flight at a time, carrying every report that arrived meanwhile: a burst fills the
   * next call (one script, one round trip for hundreds of reports), a quiet feed sends each at once.
   */
  async function appendWaiting(): Promise<void> {
    appending = true;
    try {
      while (waiting.length > 0 && active) {
        const batch = waiting.splice(0, MAX_APPEND_BATCH);
        let appended: AppendResult;
        try {
          appended = await log.append(token, batch);
        } catch (error) {
          // Whether the append landed is unknown: start again from what Redis recorded.
          logger.warn("appending to the executions stream failed; reconnecting", { error });
          waiting = [];
          restart("redis-error");
          return;
        }
        if (appended.result === "fenced") {
          logger.error("gateway lease lost (fenced append); going to standby");
          waiting = [];
          setActive(false);
          disconnect();
          return;
        }
        observer?.received?.("appended", appended.appended);
        observer?.lastSequence?.(appended.last);
        confirmedSeq = appended.last;
        if (appended.result === "gap") {
          // Redis recorded less than this gateway appended (it restarted empty, or lost writes): the
          // venue replays from what Redis has.
          observer?.gapFound?.();
          waiting = [];
          restart("redis-gap");
          return;
        }
        observer?.received?.("duplicate", batch.length - appended.appended);
      }
    } finally {
      appending = false;
    }
  }

  async function tick(): Promise<void> {
    if (closed) return;
    const now = Date.now();
    try {
      if (!active) {
        if (await log.acquireLease(token, options.leaseMs)) {
          renewedAt = now;
          setActive(true);
          failures = 0;
          scheduleConnect("takeover");
        }
      } else if (await log.renewLease(token, options.leaseMs)) {
        renewedAt = now;
      } else {
        setActive(false);
        disconnect();
      }
    } catch (error) {
      // Redis unreachable: past the lease's life another gateway may hold it; stop reading until sure.
      if (active && now - renewedAt >= options.leaseMs) {
        logger.warn("cannot renew the gateway lease; going to standby", { error });
        setActive(false);
        disconnect();
      }
    }
    if (active && socket && now - lastFrameAt > STALE_MS) restart("stale");
    else if (active && socket && session !== null && !appending && waiting.length === 0) {
      // Redis may have lost what this gateway appended (restarted empty, a failover to a replica that
      // lagged): with nothing more arriving, no append would notice. Its record is the truth.
      const recorded = await log.position().catch(() => null);
      if (confirmedSeq > 0 && recorded && (recorded.session !== session || recorded.seq < confirmedSeq)) {
        logger.warn("Redis holds less than this gateway appended; replaying from its record", {
          recorded_seq: recorded.seq,
          appended_seq: confirmedSeq,
        });
        observer?.gapFound?.();
        restart("redis-lost");
      }
    }
    if (active && gapOpenSince !== null && socket) askResend(expected);
    observer?.gapOpenSeconds?.(gapOpenSince === null ? 0 : (now - gapOpenSince) / 1000);
    // A session is known only between the venue's logon answer and the connection's end.
    observer?.loggedOn?.(active && socket !== null && session !== null);
  }

  let ticker: ReturnType<typeof setInterval> | undefined;
  return {
    start(): void {
      observer?.active?.(false);
      void tick();
      ticker = setInterval(() => void tick(), Math.max(100, Math.floor(options.leaseMs / 3)));
    },
    get active(): boolean {
      return active;
    },
    async close(): Promise<void> {
      closed = true;
      clearInterval(ticker);
      clearTimeout(reconnectTimer);
      disconnect();
      if (active) await log.releaseLease(token).catch(() => {});
      setActive(false);
      observer?.loggedOn?.(false);
    },
  };
}

export type ExecutionGateway = ReturnType<typeof createExecutionGateway>;
