/**
 * The placement state of each order in Redis, and its stream entries: the intake's dispatch, the actors'
 * leases and retry schedule, and the sweeper's re-dispatch. Each step that touches two keys is one Lua
 * script (atomic; the keys of a partition share a hash tag, so this holds in Redis Cluster too).
 *
 * State key values: `queued` (an entry is on the stream), `lease:TOKEN` (an actor works on it; the key
 * expires with the lease, on the Redis server's clock), `retry` (in the retry schedule), `done:OUTCOME`
 * (durable in MongoDB), `done:withdrawn` (the fence of a withdrawal: no actor leases it, no dispatch
 * adds it). Every value expires (`trackTtlMs`; the fence after a day): if Redis lost an entry but kept
 * the key, the sweeper takes the order over after that long at the latest.
 */
import type { OrderRecord } from "../domain/order.ts";
import type {
  DispatchedOrder,
  DispatchResult,
  LeaseAnswer,
  PlacementDispatcher,
  PlacementLeases,
  WithdrawalFence,
} from "../domain/ports.ts";
import type { RedisConnection } from "./redis.ts";
import type { RedisKeys } from "./redis-keys.ts";

const DISPATCH = `
if redis.call('SET', KEYS[1], 'queued', 'NX', 'PX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
  return 'added'
end
if redis.call('GET', KEYS[1]) == 'done:withdrawn' then return 'withdrawn' end
return 'tracked'`;

/** Any state but a lease or a final outcome becomes the withdrawal fence (an entry still queued is skipped). */
const FENCE_WITHDRAWAL = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 6) == 'lease:' then return 'held' end
if v == 'done:placed' then return 'placed' end
if v == 'done:rejected' then return 'rejected' end
redis.call('SET', KEYS[1], 'done:withdrawn', 'PX', ARGV[1])
return 'fenced'`;

const ACQUIRE = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 5) == 'done:' then return 'done' end
if v and string.sub(v, 1, 6) == 'lease:' then return 'held' end
redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', ARGV[2])
return 'acquired'`;

const SCHEDULE_RETRY = `
local v = redis.call('GET', KEYS[1])
if v and v ~= 'lease:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'retry', 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'queued', 'PX', ARGV[2])
end
return 1`;

/** Moves due members of the retry schedule (JSON arrays of stream fields) onto the stream. */
const MOVE_DUE = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
  redis.call('ZREM', KEYS[1], member)
end
return #due`;

/**
 * How long a withdrawal's fence stays: far past the time the API retries the withdrawal in MongoDB and
 * the sweeper finishes one it finds fenced (an API that died after fencing).
 */
const WITHDRAWAL_FENCE_TTL_MS = 24 * 3_600_000;

type Scripted = RedisConnection & {
  placementDispatch(
    state: string,
    stream: string,
    ttlMs: number,
    ...fields: string[]
  ): Promise<DispatchResult>;
  placementFenceWithdrawal(state: string, ttlMs: number): Promise<WithdrawalFence>;
  placementAcquire(state: string, token: string, leaseMs: number): Promise<LeaseAnswer>;
  placementScheduleRetry(
    state: string,
    schedule: string,
    token: string,
    ttlMs: number,
    dueMs: number,
    member: string,
  ): Promise<number>;
  placementRelease(state: string, token: string, ttlMs: number): Promise<number>;
  placementMoveDue(schedule: string, stream: string, nowMs: number, limit: number): Promise<number>;
};

function withScripts(redis: RedisConnection): Scripted {
  const scripted = redis as Scripted;
  if (typeof scripted.placementDispatch === "function") return scripted;
  redis.defineCommand("placementDispatch", { numberOfKeys: 2, lua: DISPATCH });
  redis.defineCommand("placementFenceWithdrawal", { numberOfKeys: 1, lua: FENCE_WITHDRAWAL });
  redis.defineCommand("placementAcquire", { numberOfKeys: 1, lua: ACQUIRE });
  redis.defineCommand("placementScheduleRetry", { numberOfKeys: 2, lua: SCHEDULE_RETRY });
  redis.defineCommand("placementRelease", { numberOfKeys: 1, lua: RELEASE });
  redis.defineCommand("placementMoveDue", { numberOfKeys: 2, lua: MOVE_DUE });
  return scripted;
}

/** The stream entry of an order: its id, where it comes from, the attempt, and the order itself. */
export function entryFields(order: DispatchedOrder, source: string, attempt: number): string[] {
  return [
    "order_id",
    order._id,
    "source",
    source,
    "attempt",
    String(attempt),
    "partition",
    String(order.partition),
    "type",
    order.type,
    "side",
    order.side,
    "instrument",
    order.instrument ?? "",
    "limit_price_cents",
    order.limit_price_cents === null ? "" : String(order.limit_price_cents),
    "quantity",
    String(order.quantity),
    ...(order.account === undefined ? [] : ["account", order.account]),
  ];
}

/** The order carried by an entry, or null for an entry with only an id (older writers, tests). */
export function orderFromEntry(fields: Record<string, string>): DispatchedOrder | null {
  const { order_id, type, side, instrument, limit_price_cents, quantity, partition, account } = fields;
  if (!order_id || !type || !side || !instrument || quantity === undefined) return null;
  if ((type !== "market" && type !== "limit") || (side !== "buy" && side !== "sell")) return null;
  const cents = limit_price_cents ? Number(limit_price_cents) : null;
  const units = Number(quantity);
  if (!Number.isSafeInteger(units) || (cents !== null && !Number.isSafeInteger(cents))) return null;
  return {
    _id: order_id,
    partition: Number(partition ?? 0) || 0,
    type,
    side,
    instrument,
    limit_price_cents: cents,
    quantity: units,
    ...(account === undefined ? {} : { account }),
  };
}

export class RedisPlacementState implements PlacementDispatcher, PlacementLeases {
  private readonly redis: Scripted;

  constructor(
    redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly trackTtlMs: number,
  ) {
    this.redis = withScripts(redis);
  }

  async dispatch(order: DispatchedOrder, source: "intake" | "sweep" | "replay"): Promise<DispatchResult> {
    // An operator's replay overrides whatever Redis remembers of the order (its entry was dead-lettered).
    if (source === "replay") await this.redis.del(this.keys.orderState(order.partition, order._id));
    return this.redis.placementDispatch(
      this.keys.orderState(order.partition, order._id),
      this.keys.placementStream(order.partition),
      this.trackTtlMs,
      ...entryFields(order, source, 1),
    );
  }

  fenceForWithdrawal(order: Pick<OrderRecord, "_id" | "partition">): Promise<WithdrawalFence> {
    return this.redis.placementFenceWithdrawal(
      this.keys.orderState(order.partition, order._id),
      WITHDRAWAL_FENCE_TTL_MS,
    );
  }

  acquire(order: Pick<OrderRecord, "_id" | "partition">, token: string, leaseMs: number) {
    return this.redis.placementAcquire(this.keys.orderState(order.partition, order._id), token, leaseMs);
  }

  async finish(order: Pick<OrderRecord, "_id" | "partition">, outcome: string): Promise<void> {
    await this.redis.set(
      this.keys.orderState(order.partition, order._id),
      `done:${outcome}`,
      "PX",
      this.trackTtlMs,
    );
  }

  async scheduleRetry(order: DispatchedOrder, token: string, dueAt: Date, attempt: number) {
    const scheduled = await this.redis.placementScheduleRetry(
      this.keys.orderState(order.partition, order._id),
      this.keys.retrySchedule(order.partition),
      token,
      this.trackTtlMs,
      dueAt.getTime(),
      JSON.stringify(entryFields(order, "retry", attempt)),
    );
    return scheduled === 1;
  }

  async release(order: Pick<OrderRecord, "_id" | "partition">, token: string): Promise<void> {
    await this.redis.placementRelease(
      this.keys.orderState(order.partition, order._id),
      token,
      this.trackTtlMs,
    );
  }

  /** Moves retries that are due onto their streams; returns how many moved. */
  async moveDueRetries(now: Date, limitPerPartition = 500): Promise<number> {
    let moved = 0;
    for (let partition = 0; partition < this.keys.placementStreams.length; partition++) {
      moved += await this.redis.placementMoveDue(
        this.keys.retrySchedule(partition),
        this.keys.placementStream(partition),
        now.getTime(),
        limitPerPartition,
      );
    }
    return moved;
  }

  /** Takes or renews the sweep lock of a partition for `ttlMs`; true when `owner` holds it now. */
  async holdSweepLock(partition: number, owner: string, ttlMs: number): Promise<boolean> {
    const key = this.keys.sweepLock(partition);
    if ((await this.redis.set(key, owner, "PX", ttlMs, "NX")) === "OK") return true;
    if ((await this.redis.get(key)) !== owner) return false;
    await this.redis.pexpire(key, ttlMs);
    return true;
  }
}
