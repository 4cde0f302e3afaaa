/**
 * Fixtures for execution reports: orders that are placed already (stored as `placed` and known to the
 * venue with their whole quantity open), so that a burst can fill them without the API and the
 * placement actors; and the execution actors' backlog, read from Redis.
 */
import type { Cluster, Redis } from "ioredis";
import type { RedisKeys } from "../../src/adapters/redis-keys.ts";
import { uuidV7 } from "../../src/domain/ids.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { mongoFor } from "./system.ts";

/** `count` limit orders of `quantity` at 100.00, in MongoDB as placed and at the venue; returns their ids. */
export async function preloadPlacedOrders(
  env: Record<string, string>,
  venue: { baseUrl: string },
  count: number,
  quantity: number,
): Promise<string[]> {
  const ids = Array.from({ length: count }, () => uuidV7());
  const { client, orders } = mongoFor(env);
  try {
    const now = new Date();
    const draft = {
      type: "limit" as const,
      side: "buy" as const,
      instrument: "US0378331005",
      limitPriceCents: 10_000 as Cents,
      quantity,
    };
    await orders.insertMany(
      ids.map((id) => ({
        ...newOrderRecord(id, draft, now, {
          partitions: 1,
          dispatchGraceMs: 3_600_000,
          idempotencyKey: null,
          account: "preloaded",
        }),
        status: "placed",
      })),
    );
  } finally {
    await client.close();
  }
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        const response = await fetch(`${venue.baseUrl}/orders`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            client_order_id: id,
            type: "limit",
            side: "buy",
            instrument: "US0378331005",
            limit_price_cents: 10_000,
            quantity,
          }),
        });
        if (response.status !== 201) throw new Error(`the venue refused an order: ${response.status}`);
      }),
    );
  }
  return ids;
}

/**
 * Reports appended and not yet acknowledged by an execution actor (lag + pending over the streams), or
 * null when Redis cannot tell (its lag is null once entries were trimmed or deleted).
 */
export async function executionBacklog(redis: Redis | Cluster, keys: RedisKeys): Promise<number | null> {
  let backlog = 0;
  for (const stream of keys.executionStreams) {
    const groups = (await redis.xinfo("GROUPS", stream).catch(() => [])) as unknown[][];
    for (const group of groups) {
      const field = (name: string) => group[group.indexOf(name) + 1];
      const lag = field("lag");
      if (lag === null || lag === undefined) return null;
      backlog += Number(lag) + Number(field("pending") ?? 0);
    }
  }
  return backlog;
}
