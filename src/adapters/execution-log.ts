/**
 * The gateway's side of Redis: the lease on the venue session (one active gateway; a standby takes over
 * when it expires) and the append of raw reports to the executions streams. An append is one Lua
 * script that checks, atomically with the XADD and the record of the last sequence number:
 * - the caller still holds the lease (fencing: a gateway paused past its lease cannot append);
 * - the report is the next of the session (a duplicate is skipped, a hole is refused: the gateway asks
 *   the venue to resend from the first missing number).
 * All keys share the `{P:executions}` hash tag (src/adapters/redis-keys.ts), so this holds in a Redis
 * Cluster too. Nothing else is stored: the reports themselves are the stream entries.
 */
import type { ExecutionReport } from "../domain/execution.ts";
import type { RedisConnection } from "./redis.ts";
import type { RedisKeys } from "./redis-keys.ts";

const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'fenced', 0} end
local stored = redis.call('HMGET', KEYS[2], 'session', 'seq')
local last = 0
if stored[1] == ARGV[2] then last = tonumber(stored[2]) or 0 end
local seq = tonumber(ARGV[3])
if seq <= last then return {'duplicate', last} end
if seq > last + 1 then return {'gap', last} end
redis.call('XADD', KEYS[3], '*', 'report', ARGV[4])
redis.call('HSET', KEYS[2], 'session', ARGV[2], 'seq', ARGV[3])
return {'appended', seq}`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export type AppendResult =
  | { result: "appended"; seq: number }
  | { result: "duplicate" | "gap"; last: number }
  | { result: "fenced" };

type Scripted = RedisConnection & {
  executionsAppend(
    lease: string,
    session: string,
    stream: string,
    token: string,
    sessionId: string,
    seq: number,
    report: string,
  ): Promise<[string, number]>;
  executionsRenew(lease: string, token: string, ttlMs: number): Promise<number>;
  executionsRelease(lease: string, token: string): Promise<number>;
};

function withScripts(redis: RedisConnection): Scripted {
  const scripted = redis as Scripted;
  if (typeof scripted.executionsAppend === "function") return scripted;
  redis.defineCommand("executionsAppend", { numberOfKeys: 3, lua: APPEND });
  redis.defineCommand("executionsRenew", { numberOfKeys: 1, lua: RENEW });
  redis.defineCommand("executionsRelease", { numberOfKeys: 1, lua: RELEASE });
  return scripted;
}

export class RedisExecutionLog {
  private readonly redis: Scripted;

  constructor(
    redis: RedisConnection,
    private readonly keys: RedisKeys,
  ) {
    this.redis = withScripts(redis);
  }

  /** Takes the lease if nobody holds it; true when `token` holds it now. */
  async acquireLease(token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.keys.executionGatewayLease, token, "PX", ttlMs, "NX")) === "OK";
  }

  /** Extends the lease; false when `token` no longer holds it (expired, taken over). */
  async renewLease(token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.executionsRenew(this.keys.executionGatewayLease, token, ttlMs)) === 1;
  }

  async releaseLease(token: string): Promise<void> {
    await this.redis.executionsRelease(this.keys.executionGatewayLease, token);
  }

  /** The session and last sequence number appended, where the next gateway resumes. */
  async position(): Promise<{ session: string | null; seq: number }> {
    const [session, seq] = await this.redis.hmget(this.keys.executionSession, "session", "seq");
    return { session: session ?? null, seq: Number(seq ?? 0) || 0 };
  }

  /**
   * Appends `report` (its raw frame, as received) if `token` holds the lease and it is the next
   * report of its session. Calls may be issued without waiting for the previous one: one connection
   * keeps their order, and the script judges each against what the previous ones did.
   */
  async append(token: string, report: ExecutionReport, raw: string): Promise<AppendResult> {
    const [result, value] = await this.redis.executionsAppend(
      this.keys.executionGatewayLease,
      this.keys.executionSession,
      this.keys.executionStream(report.client_order_id),
      token,
      report.session,
      report.seq,
      raw,
    );
    if (result === "appended") return { result, seq: Number(value) };
    if (result === "duplicate" || result === "gap") return { result, last: Number(value) };
    return { result: "fenced" };
  }
}
