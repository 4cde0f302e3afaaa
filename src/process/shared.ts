/**
 * The connections and stores one service process shares between its API and its actors: the MongoDB
 * client (operations counted by kind, and bounded in flight), the order repository, the Redis command
 * connection, the Redis keys, the placement state and the metrics.
 */
import type { Db, MongoClient } from "mongodb";
import { createMetrics, type Metrics, type ProcessKind } from "../adapters/metrics.ts";
import { boundedInFlight, createMongoClient, type InFlightGate } from "../adapters/mongo/client.ts";
import { countOperations } from "../adapters/mongo/operation-counter.ts";
import { MongoOrderRepository } from "../adapters/mongo/order-repository.ts";
import { RedisPlacementState } from "../adapters/placement-state.ts";
import {
  awaitConnection,
  closeRedis,
  createRedisConnection,
  pingRedis,
  type RedisConnection,
  redisTarget,
} from "../adapters/redis.ts";
import { createRedisKeys, type RedisKeys } from "../adapters/redis-keys.ts";
import { type Config, databaseName } from "../config.ts";
import type { LivenessCheck, ReadinessCheck } from "../http/ops-routes.ts";
import type { Closer } from "./lifecycle.ts";

export interface Shared {
  mongo: MongoClient;
  db: Db;
  orders: MongoOrderRepository;
  /** The bound on this process's operations waiting on MongoDB, shared by every writer of the process. */
  mongoGate: InFlightGate;
  keys: RedisKeys;
  metrics: Metrics;
  /** One Redis, or a Redis Cluster client when REDIS_CLUSTER_NODES is set. */
  commands: RedisConnection;
  placementState: RedisPlacementState;
  /** Checks behind /health/live; the actors add theirs when they start. */
  liveness: LivenessCheck[];
}

export type ServiceKind = "api" | "actors" | "executions" | "all";

export async function connectShared(config: Config, kind: ProcessKind, closers: Closer[]): Promise<Shared> {
  const metrics = createMetrics(kind);
  const mongo = createMongoClient(config.MONGO_URL, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    maxPoolSize: config.MONGO_MAX_POOL_SIZE,
  });
  closers.push({ name: "mongodb", close: () => mongo.close() });
  const commands = createRedisConnection(redisTarget(config), {
    name: `orders-${kind}`,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    failFastWhenDisconnected: true,
    autoPipelining: config.REDIS_AUTO_PIPELINING === "true",
  });
  commands.on("error", () => {}); // reconnects by itself; readiness and metrics report the outage
  closers.push({ name: "redis", close: () => closeRedis(commands) });
  await awaitConnection(commands, config.MONGO_TIMEOUT_MS);
  const db = countOperations(mongo.db(databaseName(config.MONGO_URL)), (command) =>
    metrics.mongoOperations.inc({ command }),
  );
  const keys = createRedisKeys(
    config.REDIS_KEY_PREFIX,
    config.PLACEMENT_PARTITIONS,
    config.EXECUTION_PARTITIONS,
  );
  const mongoGate = boundedInFlight(config.MONGO_MAX_IN_FLIGHT);
  const orders = new MongoOrderRepository(db, {
    timeoutMs: config.MONGO_TIMEOUT_MS,
    gate: mongoGate,
    insertWindowMs: config.INTAKE_BATCH_WINDOW_MS,
    insertMaxBatch: config.INTAKE_BATCH_MAX,
    onDurableWrite: (writeKind, documents) => metrics.mongoDurableWrites.inc({ kind: writeKind }, documents),
  });
  const placementState = new RedisPlacementState(commands, keys, config.PLACEMENT_TRACK_TTL_MS);
  return { mongo, db, orders, mongoGate, keys, metrics, commands, placementState, liveness: [] };
}

/**
 * What /health/ready waits for. The API answers POST /orders per its contract with MongoDB alone (201
 * with Redis down: the sweeper dispatches later), so Redis being down must not take it out of its
 * Service; actors (and `all`) cannot place anything without Redis.
 */
export function readinessChecks(shared: Shared, kind: ServiceKind): ReadinessCheck[] {
  const mongodb: ReadinessCheck = {
    name: "mongodb",
    ping: async (signal) => (await shared.db.command({ ping: 1 }, { signal })).ok === 1,
  };
  if (kind === "api") return [mongodb];
  return [mongodb, { name: "redis", ping: () => pingRedis(shared.commands) }];
}
