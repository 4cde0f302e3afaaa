/** The key layout of src/adapters/redis-keys.ts: one hash tag per partition, the deployment's prefix inside it. */
import { expect, test } from "bun:test";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";

/** The part of a key Redis Cluster hashes: the first {...} with something inside. */
const hashTag = (key: string) => /\{([^}]+)\}/.exec(key)?.[1];

test("every key of a partition shares one hash tag, which holds the prefix and the partition", () => {
  const keys = createRedisKeys("orders-eu", 3);
  for (let partition = 0; partition < 3; partition++) {
    const tags = new Set(
      [
        keys.placementStream(partition),
        keys.orderState(partition, "0190f0c0-0000-7000-8000-000000000001"),
        keys.retrySchedule(partition),
        keys.sweepLock(partition),
      ].map(hashTag),
    );
    expect([...tags]).toEqual([`orders-eu:placement-${partition}`]);
  }
  expect(keys.placementStreams.map(hashTag)).toEqual([0, 1, 2].map((i) => `orders-eu:placement-${i}`));
});

test("two deployments sharing a cluster hash their partitions apart; a partition past the count maps modulo", () => {
  const eu = createRedisKeys("orders-eu", 2);
  const us = createRedisKeys("orders-us", 2);
  expect(hashTag(eu.placementStream(0))).not.toBe(hashTag(us.placementStream(0)));
  expect(eu.placementStream(5)).toBe(eu.placementStream(1));
  expect(hashTag(eu.rateLimit("acme"))).toBe("ratelimit-acme");
});
