/**
 * Every Redis key and stream name, built in one place.
 *
 * Layout (prefix P, partition i of N):
 *   {P:placement-i}:stream   placement stream, one per partition; the hash tag keeps each partition on
 *                            one Redis Cluster slot and spreads partitions over slots; the prefix is in
 *                            the tag, so two deployments sharing a cluster do not stack their partition
 *                            i on one slot
 *   {P:placement-i}:order:ID the order's placement state: queued | lease:TOKEN | retry | done:OUTCOME
 *                            (done:withdrawn: the fence of a withdrawal)
 *   {P:placement-i}:retry    sorted set of orders waiting for a retry (score: due time in ms)
 *   {P:placement-i}:sweeper  which actor process sweeps partition i now (a short lock)
 *   P:placement:dead-letter  entries that cannot be placed (rejected by the venue, poison messages)
 *   P:{ratelimit-ACCOUNT}    an account's rate limit: its GCRA theoretical arrival time (µs, Redis server
 *                            clock); expires when the account's burst is full again. The account is the
 *                            hash tag, so accounts spread over slots and each limit is one key on one slot
 *                            (an account holding `}` only shortens its tag: still one key per script call)
 * Keys of one partition share its hash tag, so one Lua script may touch them all in Redis Cluster.
 * A partition number at or past the current count maps modulo the count: orders stored while
 * PLACEMENT_PARTITIONS was higher still find a stream.
 * Invariant: the consumer group name is the same on every partition, so one actor process reads all
 * partitions through one XREADGROUP call.
 */
export interface RedisKeys {
  readonly placementStreams: readonly string[];
  readonly placementGroup: string;
  readonly deadLetterStream: string;
  placementStream(partition: number): string;
  orderState(partition: number, orderId: string): string;
  retrySchedule(partition: number): string;
  sweepLock(partition: number): string;
  rateLimit(account: string): string;
}

export function createRedisKeys(prefix: string, partitions: number): RedisKeys {
  const tag = (partition: number) => {
    const index = Number.isInteger(partition) && partition >= 0 ? partition % partitions : 0;
    return `{${prefix}:placement-${index}}`;
  };
  const placementStreams = Array.from({ length: partitions }, (_, i) => `${tag(i)}:stream`);
  return {
    placementStreams,
    placementGroup: "placement-actors",
    deadLetterStream: `${prefix}:placement:dead-letter`,
    placementStream: (partition) => `${tag(partition)}:stream`,
    orderState: (partition, orderId) => `${tag(partition)}:order:${orderId}`,
    retrySchedule: (partition) => `${tag(partition)}:retry`,
    sweepLock: (partition) => `${tag(partition)}:sweeper`,
    rateLimit: (account) => `${prefix}:{ratelimit-${account}}`,
  };
}
