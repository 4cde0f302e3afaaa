/** Redis connections. */
import { Redis } from "ioredis";

export interface RedisClientOptions {
  /** Reject a command that got no reply in this many ms; unset for connections that block (XREADGROUP). */
  commandTimeoutMs?: number;
  /** Fail commands at once while disconnected instead of queueing them (the request path must not wait). */
  failFastWhenDisconnected?: boolean;
  name: string;
}

export function createRedisClient(url: string, options: RedisClientOptions): Redis {
  return new Redis(url, {
    connectionName: options.name,
    commandTimeout: options.commandTimeoutMs,
    enableOfflineQueue: !options.failFastWhenDisconnected,
    maxRetriesPerRequest: options.failFastWhenDisconnected ? 0 : null,
    // Reconnect forever with a capped backoff: Redis coming back must heal every process by itself.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
    lazyConnect: false,
  });
}

/** Waits up to `ms` for the first connection; never throws (Redis down must not stop the API starting). */
export async function awaitConnection(redis: Redis, ms: number): Promise<boolean> {
  if (redis.status === "ready") return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(false), ms);
    const onReady = () => finish(true);
    function finish(ready: boolean) {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ready);
    }
    redis.once("ready", onReady);
  });
}

export async function pingRedis(redis: Redis): Promise<boolean> {
  return (await redis.ping()) === "PONG";
}

/** Closes a connection, waiting for QUIT when connected, and never throwing. */
export async function closeRedis(redis: Redis): Promise<void> {
  try {
    if (redis.status === "ready") await redis.quit();
    else redis.disconnect();
  } catch {
    redis.disconnect();
  }
}
