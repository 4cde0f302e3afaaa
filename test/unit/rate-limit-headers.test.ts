/**
 * The RateLimit header fields of a decision (draft-ietf-httpapi-ratelimit-headers): the policy's quota
 * and window, the remaining units and the seconds to a full burst, and Retry-After only on a denial,
 * every number a whole one rounded the way that never makes a client early.
 */
import { describe, expect, test } from "bun:test";
import {
  type RateDecision,
  rateLimitHeaders,
  rateLimitWindowSeconds,
} from "../../src/adapters/rate-limiter.ts";

const policy = { ratePerSecond: 10, burst: 20 };
const decision = (overrides: Partial<RateDecision> = {}): RateDecision => ({
  allowed: true,
  limit: 20,
  remaining: 19,
  resetSeconds: 0.1,
  retryAfterSeconds: 0,
  ...overrides,
});

describe("rateLimitHeaders", () => {
  test("an allowed request gets the policy and the current limit, and no Retry-After", () => {
    expect(rateLimitHeaders(decision(), policy)).toEqual({
      "RateLimit-Policy": '"default";q=20;w=2',
      RateLimit: '"default";r=19;t=1',
    });
  });

  test("a denied request gets Retry-After in whole seconds, at least 1", () => {
    const denied = decision({ allowed: false, remaining: 0, resetSeconds: 2, retryAfterSeconds: 0.1 });
    expect(rateLimitHeaders(denied, policy)).toEqual({
      "RateLimit-Policy": '"default";q=20;w=2',
      RateLimit: '"default";r=0;t=2',
      "Retry-After": "1",
    });
    expect(rateLimitHeaders({ ...denied, retryAfterSeconds: 0 }, policy)["Retry-After"]).toBe("1");
    expect(rateLimitHeaders({ ...denied, retryAfterSeconds: 3.001 }, policy)["Retry-After"]).toBe("4");
  });

  test("reset rounds up, a full burst resets in 0 seconds", () => {
    expect(rateLimitHeaders(decision({ resetSeconds: 1.001 }), policy).RateLimit).toBe('"default";r=19;t=2');
    expect(rateLimitHeaders(decision({ remaining: 20, resetSeconds: 0 }), policy).RateLimit).toBe(
      '"default";r=20;t=0',
    );
  });

  test("the policy name is an sf-string: quotes and backslashes escaped, non-ASCII refused", () => {
    const headers = rateLimitHeaders(decision(), policy, 'per "account" \\ orders');
    expect(headers["RateLimit-Policy"]).toBe('"per \\"account\\" \\\\ orders";q=20;w=2');
    expect(headers.RateLimit).toBe('"per \\"account\\" \\\\ orders";r=19;t=1');
    expect(() => rateLimitHeaders(decision(), policy, "ordres\u00e9")).toThrow(RangeError);
    expect(() => rateLimitHeaders(decision(), policy, "a\nb")).toThrow(RangeError);
  });
});

describe("rateLimitWindowSeconds", () => {
  test.each([
    [{ ratePerSecond: 10, burst: 20 }, 2],
    [{ ratePerSecond: 50, burst: 5 }, 1],
    [{ ratePerSecond: 3, burst: 10 }, 4],
    [{ ratePerSecond: 0.3, burst: 3 }, 10],
    [{ ratePerSecond: 1 / 60, burst: 1 }, 60],
    [{ ratePerSecond: 100, burst: 100 }, 1],
  ])("%o: burst / rate rounded up is %p", (p, seconds) => {
    expect(rateLimitWindowSeconds(p)).toBe(seconds);
  });

  test("the advertised quota per window is never more than the rate", () => {
    for (const p of [
      { ratePerSecond: 3, burst: 10 },
      { ratePerSecond: 7.5, burst: 4 },
      { ratePerSecond: 1000, burst: 1 },
    ]) {
      expect(p.burst / rateLimitWindowSeconds(p)).toBeLessThanOrEqual(p.ratePerSecond);
    }
  });
});
