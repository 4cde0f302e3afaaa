/**
 * A per-account rate limit in Redis: the generic cell rate algorithm (GCRA), one key per account
 * (`RedisKeys.rateLimit`) holding the account's theoretical arrival time (TAT) in µs.
 *
 * Each request spends `cost` units; units come back at `ratePerSecond`, and at most `burst` of them
 * can be saved up. In GCRA terms the emission interval is T = 1/ratePerSecond and the tolerance is
 * burst·T: a request is allowed when its new TAT, max(TAT, now) + cost·T, is at most now + burst·T.
 *
 * Invariants:
 * - One Lua script reads, decides and writes (atomic: concurrent requests of any number of API pods
 *   never spend a unit twice), and it touches one key only, so it runs unchanged on a Redis Cluster.
 * - "now" is the Redis server's clock (`TIME`), never a pod's: pods with skewed clocks share one limit.
 *   A script that writes after `TIME` needs effect replication, the default since Redis 5 (older
 *   servers needed `redis.replicate_commands()`; Redis 7 ignores it): the replica receives the SET,
 *   not the script.
 * - The key expires when the account is back to a full burst (its TAT has passed): an idle account
 *   costs no memory, and an expired key means exactly a full burst.
 * - All arithmetic is in whole µs (the emission interval is rounded up to one), which keeps it exact
 *   in Lua's doubles; rounding up only ever lowers the rate, by under 1 µs per unit.
 *
 * Redis errors reject `take`: whether to fail open is the caller's decision.
 */
import type { RedisConnection } from "./redis.ts";
import type { RedisKeys } from "./redis-keys.ts";

/** A rate limit: `burst` units at once, refilled at `ratePerSecond` units a second. */
export interface RateLimitPolicy {
  /** Units refilled per second; more than 0 and at most 1,000,000 (one unit a µs). */
  ratePerSecond: number;
  /**
   * Units an idle account may spend at once (the bucket's size); an integer of at least 1, and a full
   * burst refills in at most a year (burst / ratePerSecond).
   */
  burst: number;
}

export interface RateDecision {
  allowed: boolean;
  /** The policy's burst. */
  limit: number;
  /** Units that could still be spent now, after this request (whole units). */
  remaining: number;
  /** Seconds (ms precision, rounded up) until the account has its full burst again. */
  resetSeconds: number;
  /** Seconds (ms precision, rounded up) until this request would be allowed; 0 when it was. */
  retryAfterSeconds: number;
}

/**
 * KEYS[1] the account's TAT (µs); ARGV: emission interval (µs), tolerance = burst·interval (µs), cost.
 * Returns {allowed 0|1, remaining units, µs until a full burst, µs until the request would be allowed}.
 * A cost of 0 reads without writing. Numbers are written with %.0f: Lua's tostring keeps 14 digits only.
 */
const TAKE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + cost * interval
local allow_at = next_tat - tolerance
local function remaining(at)
  return math.max(0, math.floor((tolerance - (at - now)) / interval))
end
if now < allow_at then
  return {0, remaining(tat), tat - now, allow_at - now}
end
if cost > 0 then
  local ttl_ms = math.ceil((next_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', string.format('%.0f', ttl_ms))
end
return {1, remaining(next_tat), next_tat - now, 0}`;

type TakeReply = [allowed: number, remaining: number, resetUs: number, retryUs: number];

type Scripted = RedisConnection & {
  rateLimitTake(key: string, intervalUs: number, toleranceUs: number, cost: number): Promise<TakeReply>;
};

function withScripts(redis: RedisConnection): Scripted {
  const scripted = redis as Scripted;
  if (typeof scripted.rateLimitTake === "function") return scripted;
  redis.defineCommand("rateLimitTake", { numberOfKeys: 1, lua: TAKE });
  return scripted;
}

const MAX_RATE_PER_SECOND = 1_000_000;
/** A year: server time plus the tolerance in µs stays far below 2^53 (exact in Lua's doubles). */
const MAX_RECOVERY_US = 365 * 24 * 3_600 * 1_000_000;

function checkPolicy(policy: RateLimitPolicy): void {
  const { ratePerSecond, burst } = policy;
  if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0 || ratePerSecond > MAX_RATE_PER_SECOND) {
    throw new RangeError(`ratePerSecond must be in (0, ${MAX_RATE_PER_SECOND}], not ${ratePerSecond}`);
  }
  if (!Number.isSafeInteger(burst) || burst < 1) {
    throw new RangeError(`burst must be an integer of at least 1, not ${burst}`);
  }
  if (burst * emissionIntervalUs(policy) > MAX_RECOVERY_US) {
    throw new RangeError(`burst / ratePerSecond must be at most a year, not ${burst / ratePerSecond} s`);
  }
}

function emissionIntervalUs(policy: RateLimitPolicy): number {
  return Math.ceil(1_000_000 / policy.ratePerSecond);
}

/** µs to seconds with ms precision, rounded up (a client waiting that long is never early). */
const toSeconds = (us: number) => Math.ceil(us / 1_000) / 1_000;

export class RedisRateLimiter {
  /** A copy of the policy given: the limiter's arithmetic is derived from it once. */
  readonly policy: Readonly<RateLimitPolicy>;
  private readonly redis: Scripted;
  private readonly intervalUs: number;
  private readonly toleranceUs: number;

  /** Throws a RangeError for a policy outside the bounds documented on `RateLimitPolicy`. */
  constructor(
    redis: RedisConnection,
    private readonly keys: RedisKeys,
    policy: RateLimitPolicy,
  ) {
    checkPolicy(policy);
    this.policy = Object.freeze({ ratePerSecond: policy.ratePerSecond, burst: policy.burst });
    this.redis = withScripts(redis);
    this.intervalUs = emissionIntervalUs(policy);
    this.toleranceUs = policy.burst * this.intervalUs;
  }

  /**
   * Spends `cost` units of `account` when it has them (all or nothing). `cost` is an integer from 0
   * (reads the account's state, spends nothing) to the burst; anything else rejects with a RangeError,
   * as a request that could never be allowed is a programming error. Rejects on any Redis error.
   */
  async take(account: string, cost = 1): Promise<RateDecision> {
    if (!Number.isSafeInteger(cost) || cost < 0 || cost > this.policy.burst) {
      throw new RangeError(`cost must be an integer from 0 to the burst (${this.policy.burst}), not ${cost}`);
    }
    const [allowed, remaining, resetUs, retryUs] = await this.redis.rateLimitTake(
      this.keys.rateLimit(account),
      this.intervalUs,
      this.toleranceUs,
      cost,
    );
    return {
      allowed: allowed === 1,
      limit: this.policy.burst,
      remaining,
      resetSeconds: toSeconds(resetUs),
      retryAfterSeconds: toSeconds(retryUs),
    };
  }
}

/**
 * The policy's window in whole seconds: the time a full burst takes to refill, burst / ratePerSecond,
 * rounded up (after rounding to the µs, so that 3 / 0.3 is 10, not 11). `q` units per `w` seconds then
 * promises no more than the limiter grants (to the µs): a client pacing itself by the advertised policy
 * is not limited (it may be granted a little more). A window under a second is advertised as 1.
 */
export function rateLimitWindowSeconds(policy: RateLimitPolicy): number {
  return Math.ceil(Math.round((policy.burst / policy.ratePerSecond) * 1_000_000) / 1_000_000);
}

/** An RFC 9651 sf-string: printable ASCII, with `"` and `\` escaped. */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) {
    throw new RangeError(`a policy name must be printable ASCII: ${JSON.stringify(value)}`);
  }
  return `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

/**
 * The response header fields of a decision, per draft-ietf-httpapi-ratelimit-headers (-08 to -11):
 * `RateLimit-Policy: "NAME";q=BURST;w=WINDOW` (window: `rateLimitWindowSeconds`) and
 * `RateLimit: "NAME";r=REMAINING;t=RESET` (t: whole seconds until a full burst, rounded up), plus
 * `Retry-After` (whole seconds, at least 1, rounded up) when the request was not allowed.
 * Pure; throws a RangeError for a policy name that is not printable ASCII.
 */
export function rateLimitHeaders(
  decision: RateDecision,
  policy: RateLimitPolicy,
  policyName = "default",
): Record<string, string> {
  const name = sfString(policyName);
  const headers: Record<string, string> = {
    "RateLimit-Policy": `${name};q=${policy.burst};w=${rateLimitWindowSeconds(policy)}`,
    RateLimit: `${name};r=${Math.max(0, Math.floor(decision.remaining))};t=${Math.max(0, Math.ceil(decision.resetSeconds))}`,
  };
  if (!decision.allowed) {
    headers["Retry-After"] = String(Math.max(1, Math.ceil(decision.retryAfterSeconds)));
  }
  return headers;
}
