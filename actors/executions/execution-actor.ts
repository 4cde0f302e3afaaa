/**
 * The execution actors' behaviour: each executions-stream entry carries one raw venue report (as the
 * gateway appended it). The reports of one stream read are applied together (a group commit: one read
 * and one bulk write of the orders they touch), each order by one writer at a time (a Redis lock per
 * order); each entry is acknowledged once its report's effect is durable. A report for an order MongoDB
 * does not know stays pending: it is delivered again later and, after MAX_DELIVERIES, kept in the
 * dead-letter stream with its history. So does a report the store keeps refusing while it takes other
 * writes (a document it cannot store, an order edited by hand): one bad report must not stop every
 * client's fills behind it.
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

/**
 * The store refused a report REFUSALS_BEFORE_GIVING_BACK times while it took other writes: the entry is
 * left pending (delivered again later, dead-lettered after MAX_DELIVERIES) and the batch goes on.
 */
export class ReportRefusedError extends Error {
  readonly code = "REPORT_REFUSED";
  constructor(
    readonly report: ExecutionReport,
    cause: unknown,
  ) {
    super(
      `the store refused execution report ${report.exec_id} of order ${report.client_order_id}: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    this.name = "ReportRefusedError";
  }
}

export interface ExecutionDeps {
  store: {
    apply(reports: readonly ExecutionReport[], now: Date): Promise<ExecutionBatchResult>;
    /** Rejects unless the store takes a durable write now. */
    probeWrite(now: Date): Promise<void>;
    /** The store answered and refused the write for a reason of the data's own. */
    isRefusal(error: unknown): boolean;
  };
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
 * How often a report is tried in place while the store refuses it and takes a probe write: enough to
 * ride out a race with a writer outside the order's lock, few enough that the reports queued behind
 * wait about a second.
 */
const REFUSALS_BEFORE_GIVING_BACK = 3;
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

  /** Applies reports together; a failure of the whole batch is every report's result. */
  async function applyTogether(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    try {
      return await flushHeld(reports);
    } catch (error) {
      return reports.map(() => error as Error);
    }
  }

  /** Applies reports one at a time, so that each failure belongs to its own report. */
  async function applyOneByOne(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    const results: (Error | null)[] = [];
    for (const report of reports) results.push(...(await applyTogether([report])));
    return results;
  }

  /** A failure no wait on the store fixes: the store's refusal, or a report that breaks the code. */
  const isRefusal = (error: Error) =>
    deps.store.isRefusal(error) || error instanceof TypeError || error instanceof RangeError;

  const storeTakesWrites = () =>
    deps.store.probeWrite(deps.clock.now()).then(
      () => true,
      () => false,
    );

  /**
   * Applies the batch; what fails on MongoDB or Redis (or waited too long for an order's lock) is
   * tried again after a backoff, until it is done. Given back (left pending, delivered again later):
   * a report of an unknown order, a report the store refused REFUSALS_BEFORE_GIVING_BACK times while it
   * took a probe write, and on shutdown what is left. When a refusal fails the whole batch, the reports
   * are applied one at a time from then on, to find the one refused.
   */
  async function flushUntilDone(reports: ExecutionReport[]): Promise<(Error | null)[]> {
    const settled: (Error | null)[] = reports.map(() => null);
    const refusals = reports.map(() => 0);
    let open = reports.map((_, i) => i);
    let oneByOne = false;
    for (let attempt = 1; ; attempt++) {
      const batch = open.map((i) => reports[i] as ExecutionReport);
      const results = oneByOne ? await applyOneByOne(batch) : await applyTogether(batch);
      open.forEach((i, k) => {
        settled[i] = results[k] ?? null;
      });
      const failed = open.filter((i) => {
        const result = settled[i];
        return result instanceof Error && !(result instanceof UnknownOrderError);
      });
      if (failed.length === 0 || shutdown?.aborted) return settled;
      const refused = failed.filter((i) => isRefusal(settled[i] as Error));
      const wholeBatch = !oneByOne && open.length > 1 && results.every((result) => result === results[0]);
      if (wholeBatch && refused.length > 0) oneByOne = true;
      else if (refused.length > 0 && (await storeTakesWrites()))
        for (const i of refused) refusals[i] = (refusals[i] ?? 0) + 1;
      const again = failed.filter((i) => (refusals[i] ?? 0) < REFUSALS_BEFORE_GIVING_BACK);
      for (const i of failed)
        if (!again.includes(i))
          settled[i] = new ReportRefusedError(reports[i] as ExecutionReport, settled[i]);
      if (again.length === 0) return settled;
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
