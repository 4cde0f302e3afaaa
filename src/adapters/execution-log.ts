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

/**
 * KEYS: lease, session record, then every executions stream. ARGV: token, session, then per report its
 * sequence number, its stream (1-based among the streams) and its raw frame. Appends the reports that
 * continue the sequence, skips the ones recorded already, stops at a hole.
 */
const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'fenced', 0, 0} end
local stored = redis.call('HMGET', KEYS[2], 'session', 'seq')
local last = 0
if stored[1] == ARGV[2] then last = tonumber(stored[2]) or 0 end
local appended = 0
local result = 'appended'
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last + 1 then
    result = 'gap'
    break
  end
  if seq == last + 1 then
    redis.call('XADD', KEYS[2 + tonumber(ARGV[i + 1])], '*', 'report', ARGV[i + 2])
    last = seq
    appended = appended + 1
  end
end
if appended > 0 then redis.call('HSET', KEYS[2], 'session', ARGV[2], 'seq', last) end
return {result, last, appended}`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * What one append call did: `appended` of the reports continued the sequence (the rest were recorded
 * already), up to `last`; `gap`: the same, then a report past a hole stopped it; `fenced`: nothing,
 * the lease is another gateway's.
 */
export type AppendResult =
  | { result: "appended" | "gap"; last: number; appended: number }
  | { result: "fenced" };

type Scripted = RedisConnection & {
  executionsAppend(
    numberOfKeys: number,
    ...keysAndArgs: (string | number)[]
  ): Promise<[string, number, number]>;
  executionsRenew(lease: string, token: string, ttlMs: number): Promise<number>;
  executionsRelease(lease: string, token: string): Promise<number>;
};

function withScripts(redis: RedisConnection): Scripted {
  const scripted = redis as Scripted;
  if (typeof scripted.executionsAppend === "function") return scripted;
  // The number of keys varies with EXECUTION_PARTITIONS: given at each call.
  redis.defineCommand("executionsAppend", { lua: APPEND });
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
   * Appends the `reports` (each with its raw frame, as received; all of one session, in sequence order)
   * that continue the recorded sequence, if `token` holds the lease: one script, one round trip.
   */
  async append(
    token: string,
    reports: readonly { report: ExecutionReport; raw: string }[],
  ): Promise<AppendResult> {
    const streams = this.keys.executionStreams;
    const args: (string | number)[] = [token, reports[0]?.report.session ?? ""];
    for (const { report, raw } of reports) {
      args.push(report.seq, streams.indexOf(this.keys.executionStream(report.client_order_id)) + 1, raw);
    }
    const [result, last, appended] = await this.redis.executionsAppend(
      2 + streams.length,
      this.keys.executionGatewayLease,
      this.keys.executionSession,
      ...streams,
      ...args,
    );
    if (result === "fenced") return { result };
    return { result: result === "gap" ? "gap" : "appended", last: Number(last), appended: Number(appended) };
  }
}
