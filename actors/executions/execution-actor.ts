/**
 * The execution actors' behaviour: each executions-stream entry carries one raw venue report (as the
 * gateway appended it). The reports of one stream read are applied together (a group commit: one read
 * and one bulk write of the orders they touch), each order by one writer at a time (a Redis lock per
 * order); each entry is acknowledged once its report's effect is durable. A report for an order MongoDB does not know stays pending: it is delivered again later and,
 * after MAX_DELIVERIES, kept in the dead-letter stream with its history.
 */
import type {
  ExecutionBatchResult,
  FillUpdate,
  ReportResult,
} from "../../src/adapters/mongo/execution-store.ts";
import { createGroupCommit } from "../../src/adapters/mongo/group-commit.ts";
import { averagePriceCents, EXEC_TYPES, type ExecutionReport } from "../../src/domain/execution.ts";
import type { Clock, OrderEvent } from "../../src/domain/ports.ts";
import type { Logger } from "../../src/logger.ts";
import { type BackoffPolicy, backoffDelay } from "../../src/support/backoff.ts";
import { PoisonMessageError } from "../placement/placement-actor.ts";
import type { ActorBehaviour, ActorMessage } from "../runtime/stream-actor.ts";

export class UnknownOrderError extends Error {
  readonly code = "UNKNOWN_ORDER";
  constructor(readonly orderId: string) {
    super(`execution report for order ${orderId}, which MongoDB does not know (yet)`);
    this.name = "UnknownOrderError";
  }
}

export interface ExecutionDeps {
  store: { apply(reports: readonly ExecutionReport[], now: Date): Promise<ExecutionBatchResult> };
  /** One writer per order (src/adapters/order-apply-locks.ts). */
  locks: {
    acquire(orderIds: readonly string[], token: string): Promise<Set<string>>;
    release(orderIds: Iterable<string>, token: string): Promise<void>;
  };
  clock: Clock;
  logger: Logger;
  /** The most reports in one batch. */
  batchMax: number;
  publish(event: OrderEvent): void;
  observe?(outcome: ReportResult, lagSeconds: number): void;
  observeBatch?(size: number): void;
  /** A batch failed on MongoDB or Redis and is tried again after `retryInMs`. */
  onTransientFailure?(error: unknown, retryInMs: number): void;
}

/** How often and how long a batch waits for orders another execution actor is writing. */
const LOCK_RETRY_MS = 20;
const LOCK_ROUNDS = 100;
/**
 * A batch that fails on MongoDB or Redis is tried again, with this backoff, for as long as it takes:
 * left to redelivery instead, a long outage would dead-letter valid reports after MAX_DELIVERIES (a
 * chaos run showed it), and a report given up on is a fill the client never sees. The entries stay
 * in flight meanwhile, so the actor reads nothing new (backpressure).
 */
const TRANSIENT_RETRY: BackoffPolicy = { baseMs: 100, maxMs: 5_000 };

export function createExecutionBehaviour(deps: ExecutionDeps): ActorBehaviour {
  /** Applies reports whose orders this flush holds; one result per report (null: durable, acknowledge). */
  async function applyHeld(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    deps.observeBatch?.(reports.length);
    const now = deps.clock.now();
    const { results, updates } = await deps.store.apply(reports, now);
    results.forEach((result, i) => {
      if (result instanceof Error) return;
      const report = reports[i] as ExecutionReport;
      const lag = (now.getTime() - Date.parse(report.transact_time)) / 1000;
      deps.observe?.(result, Math.max(0, lag));
      if (result === "overfill" || result === "not_placeable")
        deps.logger.error("execution report contradicts its order; flagged, not applied", {
          order_id: report.client_order_id,
          exec_id: report.exec_id,
          result,
        });
    });
    for (const update of updates) deps.publish(eventOf(update, now));
    return results.map((result, i) => {
      if (result instanceof Error) return result;
      return result === "unknown_order"
        ? new UnknownOrderError((reports[i] as ExecutionReport).client_order_id)
        : null;
    });
  }

  let shutdown: AbortSignal | undefined;
  const batches = createGroupCommit<ExecutionReport>({
    // The entries of one read are dispatched together, so a window of 1 ms gathers a read's reports.
    // One batch at a time: while it is written the next one grows (an order's reports coalesce into
    // one summary write), and two batches would only wait for each other's order locks.
    windowMs: 1,
    maxBatch: deps.batchMax,
    maxConcurrentFlushes: 1,
    flush: (reports) => flushUntilDone(reports),
  });

  /** Applies a batch, each order under its lock; one result per report. */
  async function flushHeld(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    const token = crypto.randomUUID();
    const settled: (Error | null)[] = reports.map(
      () => new Error("the order was being written by another execution actor; delivered again later"),
    );
    let waiting = reports.map((_, i) => i);
    const orderOf = (i: number) => (reports[i] as ExecutionReport).client_order_id;
    for (let round = 0; waiting.length > 0 && round < LOCK_ROUNDS; round++) {
      if (round > 0) await Bun.sleep(LOCK_RETRY_MS);
      const held = await deps.locks.acquire([...new Set(waiting.map(orderOf))], token);
      const now = waiting.filter((i) => held.has(orderOf(i)));
      waiting = waiting.filter((i) => !held.has(orderOf(i)));
      if (now.length === 0) continue;
      try {
        const results = await applyHeld(now.map((i) => reports[i] as ExecutionReport));
        now.forEach((i, k) => {
          settled[i] = results[k] ?? null;
        });
      } finally {
        await deps.locks.release(held, token).catch(() => {});
      }
    }
    return settled;
  }

  /**
   * Applies the batch; what fails on MongoDB or Redis (or waited too long for an order's lock) is
   * tried again after a backoff, until it is done. Only a report of an unknown order is given back
   * (left pending, delivered again later), and on shutdown what is left.
   */
  async function flushUntilDone(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    const settled: (Error | null)[] = reports.map(() => null);
    let open = reports.map((_, i) => i);
    for (let attempt = 1; ; attempt++) {
      let results: (Error | null)[] | null = null;
      let failure: unknown = null;
      try {
        results = await flushHeld(open.map((i) => reports[i] as ExecutionReport));
      } catch (error) {
        failure = error;
      }
      const again: number[] = [];
      open.forEach((i, k) => {
        const result = results ? (results[k] ?? null) : (failure as Error);
        settled[i] = result;
        if (result !== null && !(result instanceof UnknownOrderError)) again.push(i);
      });
      if (again.length === 0 || shutdown?.aborted) return settled;
      const delayMs = backoffDelay(attempt, TRANSIENT_RETRY);
      deps.onTransientFailure?.(settled[again[0] as number], delayMs);
      await Bun.sleep(delayMs);
      open = again;
    }
  }

  return {
    async handle(message: ActorMessage, signal: AbortSignal) {
      shutdown = signal;
      const report = parseReport(message.fields.report);
      if (report === null)
        throw new PoisonMessageError(`entry ${message.id} holds no valid execution report`);
      await batches.submit(report);
    },
  };
}

function eventOf(update: FillUpdate, now: Date): OrderEvent {
  const last = update.applied.at(-1);
  return {
    order_id: update.orderId,
    account: update.account,
    status: update.summary.status,
    at: last?.executed_at ?? now,
    filled_quantity: update.summary.filled_quantity,
    average_price_cents: averagePriceCents(update.summary),
    ...(last && {
      execution: {
        exec_id: last._id,
        exec_type: last.exec_type,
        quantity: last.quantity,
        price_cents: last.price_cents,
      },
    }),
  };
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isText = (value: unknown): value is string => typeof value === "string" && value.length > 0;

/** The report of an entry, or null when it is not one (a poison entry). */
export function parseReport(raw: string | undefined): ExecutionReport | null {
  if (raw === undefined) return null;
  let value: Partial<ExecutionReport>;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  const valid =
    isText(value.exec_id) &&
    isText(value.session) &&
    isCount(value.seq) &&
    isText(value.client_order_id) &&
    isText(value.venue_order_id) &&
    (EXEC_TYPES as readonly unknown[]).includes(value.exec_type) &&
    isCount(value.last_qty) &&
    (value.last_price_cents === null || isCount(value.last_price_cents)) &&
    isCount(value.cum_qty) &&
    isCount(value.leaves_qty) &&
    isText(value.transact_time) &&
    !Number.isNaN(Date.parse(value.transact_time));
  return valid ? (value as ExecutionReport) : null;
}
