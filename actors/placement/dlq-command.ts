/**
 * `orders dlq list [--limit N]` and `orders dlq replay <entry-id>... | --all`: the operator's view of
 * the dead-letter stream and of the parked orders. MongoDB is the source of truth for parked orders
 * (`{status: "accepted", parked: true}`): `list` prints each dead-letter entry (with `parked_at` when
 * its order is parked) and then every parked order no entry names (the stream is lost when Redis
 * restarts empty; an order whose attempts ran out never had an entry). Replay unparks the order, puts
 * it back on its placement stream (whatever Redis remembered of it), and deletes the dead-letter entry;
 * `--all` then replays the parked orders found in MongoDB too. Orders already final (placed, rejected)
 * are reported and their entries removed; nothing final is ever re-placed.
 */

import { createMongoClient } from "../../src/adapters/mongo/client.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { RedisPlacementState } from "../../src/adapters/placement-state.ts";
import {
  closeRedis,
  createRedisConnection,
  type RedisConnection,
  redisTarget,
} from "../../src/adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../../src/adapters/redis-keys.ts";
import { type Config, databaseName } from "../../src/config.ts";
import { isPlacementFinal } from "../../src/domain/order.ts";
import { createIoredisStreamPort, type StreamPort } from "../runtime/redis-streams.ts";

export function runDeadLetterCommand(
  config: Config,
  args: string[],
  print: (line: string) => void,
): Promise<number> {
  return runDeadLetterActions(config, args, print, {
    usage:
      "orders dlq list [--limit N] | orders dlq replay <entry-id>... | orders dlq replay --all (add --executions for execution reports)",
    connectionName: "orders-dlq",
    list: async ({ keys, port, orders }, rest) => {
      const limit = limitOf(rest);
      const entries = await port.range(keys.deadLetterStream, "-", "+", limit);
      const parked = new Map((await orders.findParked(limit)).map((order) => [order._id, order]));
      for (const entry of entries) {
        const orderId = entryOrderId(entry.fields);
        const order = orderId ? parked.get(orderId) : undefined;
        if (orderId) parked.delete(orderId);
        print(
          JSON.stringify({
            id: entry.id,
            ...entry.fields,
            ...(order ? { parked: true, parked_at: order.parked_at?.toISOString() ?? null } : {}),
          }),
        );
      }
      // Parked orders with no dead-letter entry (Redis lost the stream, or the attempts ran out).
      for (const order of parked.values()) print(JSON.stringify(parkedLine(order)));
    },
    replay: async ({ redis, keys, port, orders }, rest) => {
      // Typed against Redis; uses only commands a Cluster client has too.
      const dispatcher = new RedisPlacementState(redis, keys, config.PLACEMENT_TRACK_TTL_MS);
      for (const entry of await selectedEntries(port, keys.deadLetterStream, rest)) {
        const orderId = entryOrderId(entry.fields);
        if (!orderId) {
          print(JSON.stringify({ id: entry.id, result: "no order id; left in place" }));
          continue;
        }
        const order = await orders.unpark(orderId, new Date());
        if (!order) {
          print(JSON.stringify({ id: entry.id, order_id: orderId, result: "unknown order; left in place" }));
          continue;
        }
        if (!isPlacementFinal(order.status)) await dispatcher.dispatch(order, "replay");
        await port.remove(keys.deadLetterStream, [entry.id]);
        print(
          JSON.stringify({
            id: entry.id,
            order_id: orderId,
            result: isPlacementFinal(order.status) ? `already ${order.status}` : "replayed",
          }),
        );
      }
      if (rest.includes("--all")) {
        // Parked orders that no dead-letter entry named (those replayed above are unparked by now).
        for (const parked of await orders.findParked(10_000)) {
          const order = await orders.unpark(parked._id, new Date());
          if (!order) continue;
          if (!isPlacementFinal(order.status)) await dispatcher.dispatch(order, "replay");
          print(
            JSON.stringify({
              order_id: order._id,
              source: "mongodb",
              result: isPlacementFinal(order.status) ? `already ${order.status}` : "replayed",
            }),
          );
        }
      }
    },
  });
}

export interface DeadLetterActions {
  usage: string;
  connectionName: string;
  list(tools: DeadLetterTools, args: string[]): Promise<void>;
  replay(tools: DeadLetterTools, args: string[]): Promise<void>;
}

/** `list` or `replay` with the rest of the arguments; exit code 2 (and the usage) for anything else. */
export async function runDeadLetterActions(
  config: Config,
  args: string[],
  print: (line: string) => void,
  actions: DeadLetterActions,
): Promise<number> {
  const [action, ...rest] = args;
  if (action !== "list" && action !== "replay") {
    print(`usage: ${actions.usage}`);
    return 2;
  }
  await withDeadLetterTools(config, actions.connectionName, (tools) => actions[action](tools, rest));
  return 0;
}

/** The entries a replay names: `--all` (up to 10,000), else each entry id given. */
export async function selectedEntries(port: StreamPort, stream: string, args: string[]) {
  return args.includes("--all")
    ? port.range(stream, "-", "+", 10_000)
    : (await Promise.all(args.map((id) => port.range(stream, id, id, 1)))).flat();
}

export interface DeadLetterTools {
  redis: RedisConnection;
  keys: RedisKeys;
  port: StreamPort;
  orders: MongoOrderRepository;
}

/** What the dead-letter commands work with (Redis, its keys, the orders in MongoDB), closed after `run`. */
async function withDeadLetterTools<T>(
  config: Config,
  connectionName: string,
  run: (tools: DeadLetterTools) => Promise<T>,
): Promise<T> {
  const redis = createRedisConnection(redisTarget(config), { name: connectionName, commandTimeoutMs: 5_000 });
  const mongo = createMongoClient(config.MONGO_URL, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    maxPoolSize: config.MONGO_MAX_POOL_SIZE,
  });
  try {
    return await run({
      redis,
      keys: createRedisKeys(
        config.REDIS_KEY_PREFIX,
        config.PLACEMENT_PARTITIONS,
        config.EXECUTION_PARTITIONS,
      ),
      port: createIoredisStreamPort(redis),
      orders: new MongoOrderRepository(mongo.db(databaseName(config.MONGO_URL)), {
        timeoutMs: config.MONGO_TIMEOUT_MS,
      }),
    });
  } finally {
    await closeRedis(redis);
    await mongo.close();
  }
}

/** `--limit N` of a list command (default 100). */
export function limitOf(args: string[]): number {
  const at = args.indexOf("--limit");
  return at >= 0 ? Number(args[at + 1] ?? 100) : 100;
}

function entryOrderId(fields: Record<string, string> | null): string | undefined {
  return fields?.order_id ?? parsePayload(fields?.payload)?.order_id;
}

function parkedLine(order: { _id: string; parked_at: Date | null; last_error: string | null }) {
  return {
    order_id: order._id,
    source: "mongodb",
    parked: true,
    parked_at: order.parked_at?.toISOString() ?? null,
    last_error: order.last_error,
  };
}

/** The fields of the entry that was dead-lettered (the runtime keeps them as JSON in `payload`). */
export function parsePayload(payload: string | undefined): Record<string, string> | null {
  try {
    return payload ? JSON.parse(payload) : null;
  } catch {
    return null;
  }
}
