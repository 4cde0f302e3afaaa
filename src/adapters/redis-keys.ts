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
 *   {P:placement-i}:apply:ID which execution actor writes the order's fills now (a short lock; taken
 *                            only while no placement lease is held: one writer per order document)
 *   P:placement:dead-letter  entries that cannot be placed (rejected by the venue, poison messages)
 *   P:{ratelimit-ACCOUNT}    an account's rate limit: its GCRA theoretical arrival time (µs, Redis server
 *                            clock); expires when the account's burst is full again. The account is the
 *                            hash tag, so accounts spread over slots and each limit is one key on one slot
 *                            (an account holding `}` only shortens its tag: still one key per script call)
 *   {P:executions}:stream-i  executions stream i of M (EXECUTION_PARTITIONS): raw venue reports, by order id
 *   {P:executions}:session   the venue session the gateway reads and the last sequence number appended
 *                            (a hash: session, seq), written by the same script as the append
 *   {P:executions}:lease     which gateway reads the venue feed now (a token that expires)
 *                            All executions keys share one tag: the gateway's append, its sequence check
 *                            and its lease are one atomic script. One venue session is one ordered
 *                            socket; its slot takes ~100k appends/s, far above a feed's rate.
 *   P:{events-ACCOUNT}       an account's order events (WebSocket /orders/events), capped; entry ids are
 *                            the event ids a client resumes from
 *   P:order-events           Pub/Sub channel: every event's account and id, so API processes push it live
 * Keys of one partition share its hash tag, so one Lua script may touch them all in Redis Cluster.
 * A partition number at or past the current count maps modulo the count: orders stored while
 * PLACEMENT_PARTITIONS was higher still find a stream.
 * Invariant: the consumer group name is the same on every partition, so one actor process reads all
 * partitions through one XREADGROUP call.
 */
import { partitionOf } from "../domain/order.ts";

export interface RedisKeys {
  readonly placementStreams: readonly string[];
  readonly placementGroup: string;
  readonly deadLetterStream: string;
  placementStream(partition: number): string;
  orderState(partition: number, orderId: string): string;
  retrySchedule(partition: number): string;
  sweepLock(partition: number): string;
  rateLimit(account: string): string;
  readonly executionStreams: readonly string[];
  readonly executionGroup: string;
  readonly executionDeadLetterStream: string;
  executionStream(orderId: string): string;
  readonly executionSession: string;
  readonly executionGatewayLease: string;
  /** The apply lock of an order, and its placement state: one slot, so one script checks both. */
  executionApplyLock(orderId: string): { lock: string; placementState: string };
  orderEvents(account: string): string;
  readonly orderEventsChannel: string;
}

export function createRedisKeys(prefix: string, partitions: number, executionPartitions = 1): RedisKeys {
  const tag = (partition: number) => {
    const index = Number.isInteger(partition) && partition >= 0 ? partition % partitions : 0;
    return `{${prefix}:placement-${index}}`;
  };
  const executionsTag = `{${prefix}:executions}`;
  const executionStreams = Array.from(
    { length: executionPartitions },
    (_, i) => `${executionsTag}:stream-${i}`,
  );
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
    executionStreams,
    executionGroup: "execution-actors",
    executionDeadLetterStream: `${prefix}:executions:dead-letter`,
    executionStream: (orderId) => executionStreams[partitionOf(orderId, executionPartitions)] as string,
    executionSession: `${executionsTag}:session`,
    executionGatewayLease: `${executionsTag}:lease`,
    executionApplyLock: (orderId) => {
      const partition = partitionOf(orderId, partitions);
      return {
        lock: `${tag(partition)}:apply:${orderId}`,
        placementState: `${tag(partition)}:order:${orderId}`,
      };
    },
    orderEvents: (account) => `${prefix}:{events-${account}}`,
    orderEventsChannel: `${prefix}:order-events`,
  };
}
