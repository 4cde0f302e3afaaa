/**
 * The chaos run's clients: a seeded plan of N operations spread evenly over the fault period, sent over
 * HTTP by a fixed number of workers, and a log of every attempt.
 *
 * Operations: new orders, mostly with an Idempotency-Key (some without); 5% same-key retries of an
 * earlier keyed request (same body, expected to replay its order); 1% reuse of an earlier key with a
 * different body (expected 422). Every request body carries a quantity unique to its operation, so an
 * order found in MongoDB is attributed to the operation that sent it even when no 201 named its id.
 *
 * Retries, as a careful brokerage client does them: a keyed request is retried with the same key and
 * body on connection errors, timeouts, 5xx and 409 (in flight), a bounded number of times with backoff;
 * a request without a key is retried only when the connection was refused (it never reached a server),
 * otherwise its outcome stays unknown.
 */
import { postOrder } from "./load.ts";
import type { Rng } from "./prng.ts";
import { tally } from "./stats.ts";

export type OpKind = "new-keyed" | "new-unkeyed" | "same-key-retry" | "reuse-different-body";

export interface PlannedOp {
  index: number;
  kind: OpKind;
  key: string | null;
  body: Record<string, unknown>;
  /** Unique per operation that sends a new body; a same-key retry carries its original's. */
  quantity: number;
  /** The earlier operation whose key a retry or reuse sends. */
  ref: number | null;
  /** When to send it, in ms after the load started. */
  scheduledMs: number;
}

export type AttemptStatus = number | "conn-refused" | "conn-error" | "timeout";

export interface Attempt {
  startMs: number;
  latencyMs: number;
  status: AttemptStatus;
  id?: string;
  replayed?: boolean;
  error?: string;
}

export type OpOutcome = "created" | "replayed" | "rejected-422" | "unknown" | "unexpected";

export interface OpResult {
  op: PlannedOp;
  attempts: Attempt[];
  outcome: OpOutcome;
  /** The order id of the 201, if any. */
  id: string | null;
  finishedMs: number;
}

const INSTRUMENTS = ["US0378331005", "DE0007164600", "US5949181045", "GB0002634946", "NL0010273215"];

function randomBody(rng: Rng, quantity: number): Record<string, unknown> {
  const type = rng.chance(0.6) ? "market" : "limit";
  const body: Record<string, unknown> = {
    type,
    side: rng.chance(0.5) ? "buy" : "sell",
    instrument: rng.pick(INSTRUMENTS),
    quantity,
  };
  if (type === "limit") {
    const cents = rng.int(1, 500_000);
    body.limit_price = rng.chance(0.5) ? cents / 100 : (cents / 100).toFixed(2);
  }
  return body;
}

/** The deterministic plan of one run: `count` operations spread over `spreadMs`. */
export function createPlan(
  rng: Rng,
  count: number,
  spreadMs: number,
  mix = { keyed: 0.85, sameKeyRetries: 0.05, differentBodyReuses: 0.01 },
): PlannedOp[] {
  const retries = Math.round(count * mix.sameKeyRetries);
  const reuses = Math.max(count >= 50 ? 1 : 0, Math.round(count * mix.differentBodyReuses));
  const candidates = rng.shuffle(Array.from({ length: Math.max(0, count - 10) }, (_, i) => i + 10));
  const special = new Map<number, OpKind>();
  for (const index of candidates.slice(0, retries)) special.set(index, "same-key-retry");
  for (const index of candidates.slice(retries, retries + reuses)) special.set(index, "reuse-different-body");

  const keyPrefix = `chaos-${Math.floor(rng.next() * 2 ** 32).toString(36)}`;
  const plan: PlannedOp[] = [];
  const keyedNew: number[] = [];
  for (let index = 0; index < count; index++) {
    const scheduledMs = count > 1 ? (index * spreadMs) / count : 0;
    let kind: OpKind = special.get(index) ?? (rng.chance(mix.keyed) ? "new-keyed" : "new-unkeyed");
    let ref: number | null = null;
    if (kind === "same-key-retry" || kind === "reuse-different-body") {
      // A recent keyed request, at least a few places back so that it is usually answered by now.
      const recent = keyedNew.filter((i) => i <= index - 3 && i >= index - 150);
      const pool = recent.length > 0 ? recent : keyedNew.filter((i) => i < index);
      if (pool.length === 0) kind = "new-keyed";
      else ref = rng.pick(pool);
    }
    const original = ref === null ? undefined : plan[ref];
    if (kind === "same-key-retry" && original) {
      plan.push({
        index,
        kind,
        key: original.key,
        body: original.body,
        quantity: original.quantity,
        ref,
        scheduledMs,
      });
      continue;
    }
    const quantity = index + 1;
    const body = randomBody(rng, quantity);
    const key =
      kind === "reuse-different-body" && original
        ? original.key
        : kind === "new-keyed"
          ? `${keyPrefix}-${index}`
          : null;
    if (kind === "new-keyed") keyedNew.push(index);
    plan.push({ index, kind, key, body, quantity, ref, scheduledMs });
  }
  return plan;
}

export interface ClientOptions {
  baseUrl: string;
  concurrency: number;
  /** Client-side timeout of one attempt. */
  timeoutMs: number;
  maxAttempts: number;
  /** ms since the load started. */
  clock: () => number;
  rng: Rng;
}

export interface ClientCounters {
  attempts: number;
  byStatus: Record<string, number>;
  done: number;
}

export class LoadClient {
  readonly counters: ClientCounters = { attempts: 0, byStatus: {}, done: 0 };
  private active = 0;
  private readonly results: (OpResult | undefined)[] = [];
  private readonly finished: Promise<OpResult>[] = [];
  private readonly resolvers: ((result: OpResult) => void)[] = [];

  constructor(private readonly options: ClientOptions) {}

  /** Requests on the wire right now. */
  get inFlight(): number {
    return this.active;
  }

  async run(plan: readonly PlannedOp[]): Promise<OpResult[]> {
    for (const op of plan) {
      this.finished[op.index] = new Promise((resolve) => {
        this.resolvers[op.index] = resolve;
      });
    }
    let next = 0;
    const worker = async () => {
      for (;;) {
        const op = plan[next++];
        if (!op) return;
        const wait = op.scheduledMs - this.options.clock();
        if (wait > 0) await Bun.sleep(wait);
        // A retry or reuse goes after its original is answered (the original was taken earlier).
        if (op.ref !== null) await this.finished[op.ref];
        const result = await this.execute(op);
        this.results[op.index] = result;
        this.counters.done += 1;
        this.resolvers[op.index]?.(result);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, plan.length) }, worker));
    return plan.map((op) => this.results[op.index] as OpResult);
  }

  private async execute(op: PlannedOp): Promise<OpResult> {
    const rng = this.options.rng.fork(`retry-${op.index}`);
    const attempts: Attempt[] = [];
    for (let n = 1; ; n++) {
      const attempt = await this.send(op);
      attempts.push(attempt);
      const { status } = attempt;
      if (status === 201) {
        return this.result(op, attempts, attempt.replayed ? "replayed" : "created", attempt.id ?? null);
      }
      if (status === 422) return this.result(op, attempts, "rejected-422", null);
      // A 503 is load shedding at intake: nothing was stored, so even a request without a key may be
      // sent again (an order stored under it would show up in the analysis as one nobody was told of).
      const retryable =
        status === 503 ||
        (op.key !== null
          ? status === 409 ||
            status === "conn-refused" ||
            status === "conn-error" ||
            status === "timeout" ||
            (typeof status === "number" && status >= 500)
          : status === "conn-refused");
      if (!retryable) {
        const unknown =
          status === "conn-error" || status === "timeout" || (typeof status === "number" && status >= 500);
        return this.result(op, attempts, unknown ? "unknown" : "unexpected", null);
      }
      if (n >= this.options.maxAttempts) return this.result(op, attempts, "unknown", null);
      const ceiling = Math.min(2_000, 150 * 2 ** (n - 1));
      await Bun.sleep(ceiling / 2 + rng.next() * (ceiling / 2));
    }
  }

  private result(op: PlannedOp, attempts: Attempt[], outcome: OpOutcome, id: string | null): OpResult {
    return { op, attempts, outcome, id, finishedMs: this.options.clock() };
  }

  private async send(op: PlannedOp): Promise<Attempt> {
    const startMs = this.options.clock();
    const started = performance.now();
    this.active += 1;
    this.counters.attempts += 1;
    let attempt: Attempt;
    try {
      const response = await postOrder(this.options.baseUrl, op.body, op.key, this.options.timeoutMs);
      const text = await response.text();
      const latencyMs = performance.now() - started;
      attempt = { startMs, latencyMs, status: response.status };
      if (response.status === 201) {
        attempt.id = (JSON.parse(text) as { id: string }).id;
        attempt.replayed = response.headers.get("idempotent-replayed") === "true";
      } else if (response.status !== 422 && response.status !== 409) {
        attempt.error = text.slice(0, 200);
      }
    } catch (error) {
      const latencyMs = performance.now() - started;
      const name = (error as Error)?.name;
      const code = (error as { code?: string })?.code;
      const status: AttemptStatus =
        name === "TimeoutError"
          ? "timeout"
          : code === "ECONNREFUSED" || code === "ConnectionRefused"
            ? "conn-refused"
            : "conn-error";
      attempt = {
        startMs,
        latencyMs,
        status,
        error: `${name ?? "Error"}: ${(error as Error)?.message ?? error}`,
      };
    } finally {
      this.active -= 1;
    }
    tally(this.counters.byStatus, String(attempt.status));
    return attempt;
  }
}
