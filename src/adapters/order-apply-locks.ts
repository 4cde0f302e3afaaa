/**
 * One writer per order document while execution reports are applied: a short lock per order in Redis,
 * taken for a batch's orders at once and given back after the write, and taken only while no placement
 * actor holds the order's lease (the placement's final write may be on its way). FerretDB rewrites a
 * whole document per update and its conditional updates are not atomic (measured: 294 of 300
 * concurrent claims both won), so two writers of one order at once could lose one's fields; MongoDB
 * updates fields atomically, and the summary's version check stays as the second line.
 * The lock and the order's placement state share the partition's hash tag: one script checks both.
 */
import type { RedisConnection } from "./redis.ts";
import type { RedisKeys } from "./redis-keys.ts";

const ACQUIRE = `
local state = redis.call('GET', KEYS[1])
if state and string.sub(state, 1, 6) == 'lease:' then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type Scripted = RedisConnection & {
  executionsAcquireApplyLock(state: string, lock: string, token: string, ttlMs: number): Promise<number>;
  executionsReleaseApplyLock(lock: string, token: string): Promise<number>;
};

export class RedisOrderApplyLocks {
  private readonly redis: Scripted;

  constructor(
    redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly ttlMs: number,
  ) {
    this.redis = redis as Scripted;
    if (typeof this.redis.executionsAcquireApplyLock !== "function") {
      redis.defineCommand("executionsAcquireApplyLock", { numberOfKeys: 2, lua: ACQUIRE });
      redis.defineCommand("executionsReleaseApplyLock", { numberOfKeys: 1, lua: RELEASE });
    }
  }

  /** Takes the locks it can of `orderIds` for `token`; returns the ids it holds now. */
  async acquire(orderIds: readonly string[], token: string): Promise<Set<string>> {
    const answers = await Promise.all(
      orderIds.map((id) => {
        const { lock, placementState } = this.keys.executionApplyLock(id);
        return this.redis.executionsAcquireApplyLock(placementState, lock, token, this.ttlMs);
      }),
    );
    return new Set(orderIds.filter((_, i) => answers[i] === 1));
  }

  async release(orderIds: Iterable<string>, token: string): Promise<void> {
    await Promise.all(
      [...orderIds].map((id) =>
        this.redis.executionsReleaseApplyLock(this.keys.executionApplyLock(id).lock, token),
      ),
    );
  }
}
