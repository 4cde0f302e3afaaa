/**
 * Per-account rate limiting of the /orders routes. The limiter's store (Redis) being down must not
 * close intake (the contract answers 201 while Redis is down): the request passes, and the caller's
 * `onUnavailable` counts it.
 */
import { RateLimitedError } from "../domain/errors.ts";

export interface RateVerdict {
  allowed: boolean;
  retryAfterSeconds: number;
  /** The RateLimit-Policy / RateLimit (and Retry-After when refused) headers of the answer. */
  headers: Record<string, string>;
}

export interface AccountRateLimiter {
  check(account: string): Promise<RateVerdict>;
}

export interface RateLimiting {
  limiter: AccountRateLimiter;
  onUnavailable(error: unknown): void;
}

/** Sets the rate headers on the answer; throws RateLimitedError when the account is over its rate. */
export async function admit(
  limiting: RateLimiting | null,
  account: string,
  headers: Record<string, unknown>,
): Promise<void> {
  if (limiting === null) return;
  let verdict: RateVerdict;
  try {
    verdict = await limiting.limiter.check(account);
  } catch (error) {
    limiting.onUnavailable(error);
    return;
  }
  Object.assign(headers, verdict.headers);
  if (!verdict.allowed) throw new RateLimitedError(verdict.retryAfterSeconds);
}
