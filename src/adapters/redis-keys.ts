/**
 * Every Redis key and stream name, built in one place.
 *
 * Layout (prefix P, partition i of N):
 *   P:{placement-i}:stream   placement stream, one per partition; the hash tag keeps each partition on
 *                            one Redis Cluster slot and spreads partitions over slots
 *   P:placement:dead-letter  entries that cannot be placed (rejected by the venue, poison messages)
 * Invariant: the consumer group name is the same on every partition, so one actor process reads all
 * partitions through one XREADGROUP call.
 */
export interface RedisKeys {
  readonly placementStreams: readonly string[];
  readonly placementGroup: string;
  readonly deadLetterStream: string;
  placementStream(partition: number): string;
}

export function createRedisKeys(prefix: string, partitions: number): RedisKeys {
  const placementStreams = Array.from({ length: partitions }, (_, i) => `${prefix}:{placement-${i}}:stream`);
  return {
    placementStreams,
    placementGroup: "placement-actors",
    deadLetterStream: `${prefix}:placement:dead-letter`,
    placementStream(partition: number) {
      const key = placementStreams[partition];
      if (key === undefined) throw new RangeError(`no placement partition ${partition} of ${partitions}`);
      return key;
    },
  };
}
