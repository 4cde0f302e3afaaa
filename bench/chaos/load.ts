import { authorizationFor, bearer, createApiKeys } from "../../test/support/system.ts";

/**
 * A closed-loop POST /orders load for the benchmarks: `concurrency` workers, each one request at a time;
 * and the one POST /orders request that it and the chaos client send.
 */

export interface Sample {
  /** ms since the load started. */
  startMs: number;
  latencyMs: number;
  /** HTTP status, or 0 for a connection error or timeout. */
  status: number;
}

export interface LoadOptions {
  baseUrl: string;
  concurrency: number;
  /** Stop starting requests after this many ms (default: unbounded). */
  durationMs?: number;
  /** Stop after this many requests (default: unbounded). */
  requests?: number;
  timeoutMs?: number;
  /** A unique body per request. */
  body?: (n: number) => Record<string, unknown>;
  /** An Idempotency-Key per request (default: `bench-<run>-<n>`). */
  key?: (n: number) => string | null;
  /**
   * One Authorization header per worker (`clientAuthorizations`), so that each client is an account of
   * its own, under its own rate limit, as the service's users are (default: the harness's one key).
   */
  authorizations?: string[];
}

const run = Math.random().toString(36).slice(2, 8);

export const defaultBody = (n: number): Record<string, unknown> =>
  n % 3 === 0
    ? { type: "limit", side: "sell", instrument: "DE0007164600", limit_price: "123.45", quantity: n + 1 }
    : { type: "market", side: n % 2 === 0 ? "buy" : "sell", instrument: "US0378331005", quantity: n + 1 };

/**
 * One POST /orders with a JSON body, `authorization` (default: the API key the harness made for
 * `baseUrl`), the Idempotency-Key unless `key` is null, and a client-side timeout.
 */
export function postOrder(
  baseUrl: string,
  body: Record<string, unknown>,
  key: string | null,
  timeoutMs: number,
  authorization?: string,
): Promise<Response> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    ...(authorization === undefined ? authorizationFor(baseUrl) : { authorization }),
  };
  if (key !== null) headers["idempotency-key"] = key;
  return fetch(`${baseUrl}/orders`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** Runs the load until `durationMs` or `requests` is reached; every sample is kept. */
export async function closedLoop(options: LoadOptions): Promise<Sample[]> {
  if (options.durationMs === undefined && options.requests === undefined) {
    throw new Error("closedLoop needs durationMs or requests");
  }
  const samples: Sample[] = [];
  const started = performance.now();
  const body = options.body ?? defaultBody;
  const key = options.key ?? ((n: number) => `bench-${run}-${n}`);
  let next = 0;
  const more = () =>
    (options.requests === undefined || next < options.requests) &&
    (options.durationMs === undefined || performance.now() - started < options.durationMs);
  const worker = async (_: unknown, index: number) => {
    const authorization = options.authorizations?.[index % options.authorizations.length];
    while (more()) {
      const n = next++;
      const k = key(n);
      const t = performance.now();
      let status = 0;
      try {
        const response = await postOrder(
          options.baseUrl,
          body(n),
          k,
          options.timeoutMs ?? 10_000,
          authorization,
        );
        await response.arrayBuffer();
        status = response.status;
      } catch {
        status = 0;
      }
      samples.push({ startMs: t - started, latencyMs: performance.now() - t, status });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return samples;
}

/**
 * One API key per client, each of an account of its own (a client company), as Authorization header
 * values: with the per-account rate limit on by default, a load from one account measures the limit.
 */
export async function clientAuthorizations(
  env: Record<string, string>,
  clients: number,
  label: string,
): Promise<string[]> {
  const accounts = Array.from({ length: clients }, (_, i) => `${label}-client-${i}`);
  return (await createApiKeys(env, accounts, label)).map((token) => bearer(token).authorization);
}
