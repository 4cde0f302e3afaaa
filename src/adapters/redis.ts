/**
 * Redis connections: one connection to REDIS_URL, or a Redis Cluster client over the seed nodes of
 * REDIS_CLUSTER_NODES. Code that runs on either is typed against `RedisConnection`.
 *
 * Dead connections are found on every connection: a command without a reply past its timeout is
 * rejected, a socket that receives nothing for `socketTimeout` while a reply is due is destroyed and
 * reconnected (a server stopped with SIGSTOP, or a peer gone half-open, keeps the TCP connection open
 * and would otherwise never be noticed), and TCP keepalive probes an idle socket.
 */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import { ensureTracingChannelHasSubscribers } from "../support/tracing-channel.ts";

// Before any command: without it ioredis traces every command under Bun (see the module).
ensureTracingChannelHasSubscribers();

/** A connection to one Redis, or a Redis Cluster client: the commands the service uses work on both. */
export type RedisConnection = Redis | Cluster;

export interface RedisClientOptions {
  /** Reject a command that got no reply in this many ms (not for connections that block: `blockingReadMs`). */
  commandTimeoutMs?: number;
  /** Fail commands at once while disconnected instead of queueing them (the request path must not wait). */
  failFastWhenDisconnected?: boolean;
  /**
   * The connection serves blocking reads (XREADGROUP BLOCK) of at most this many ms: its command and
   * socket timeouts are set a little above it, so a read never waits much longer than its BLOCK time.
   */
  blockingReadMs?: number;
  /**
   * Send the commands issued in one turn of the event loop in one write (ioredis auto-pipelining):
   * under load most of a command's cost is its own write, on the client and in Redis. Each command
   * keeps its own reply, error and timeout. Not for a blocking or subscribing connection.
   */
  autoPipelining?: boolean;
  name: string;
}

/** Where Redis is: the seed nodes of a cluster ("host:port,host:port"), else one server's URL. */
export interface RedisTarget {
  url: string;
  clusterNodes?: string | undefined;
}

/** TCP keepalive: the first probe after this long idle (ioredis' default is 30 s). */
const KEEPALIVE_MS = 10_000;
/** A command connection's socket timeout never goes below this (a slow Lua script is not a dead peer). */
const MIN_SOCKET_TIMEOUT_MS = 2_000;
/** A blocking read is rejected this long after its BLOCK time has passed without a reply. */
const BLOCKING_COMMAND_GRACE_MS = 1_000;
/** A blocking connection's socket is destroyed this long after a read's BLOCK time without any data. */
const BLOCKING_SOCKET_GRACE_MS = 2_000;

/** Reconnect forever with a capped backoff: Redis coming back must heal every process by itself. */
const reconnectDelay = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);

/** The timeouts of one connection (see the module header). */
function timeouts(
  options: RedisClientOptions,
): Pick<RedisOptions, "commandTimeout" | "socketTimeout" | "keepAlive" | "autoResendUnfulfilledCommands"> {
  const commandTimeout =
    options.blockingReadMs !== undefined
      ? options.blockingReadMs + BLOCKING_COMMAND_GRACE_MS
      : options.commandTimeoutMs;
  const socketTimeout =
    options.blockingReadMs !== undefined
      ? options.blockingReadMs + BLOCKING_SOCKET_GRACE_MS
      : Math.max(MIN_SOCKET_TIMEOUT_MS, 2 * (commandTimeout ?? 0));
  return {
    commandTimeout,
    socketTimeout,
    keepAlive: KEEPALIVE_MS,
    // ioredis sends the commands still queued on a connection that closed again on the next one, those
    // already rejected by their timeout included: a read the caller gave up on would then take entries
    // nobody receives (pending until reclaimed), a write would happen after its caller was told it
    // failed. With a timeout every command settles by itself; none is sent twice.
    autoResendUnfulfilledCommands: commandTimeout === undefined,
  };
}

export function createRedisClient(url: string, options: RedisClientOptions): Redis {
  return new Redis(url, {
    connectionName: options.name,
    ...timeouts(options),
    enableAutoPipelining: options.autoPipelining === true,
    enableOfflineQueue: !options.failFastWhenDisconnected,
    maxRetriesPerRequest: options.failFastWhenDisconnected ? 0 : null,
    retryStrategy: reconnectDelay,
    lazyConnect: false,
  });
}

/** Parses "host:port,host:port,..." (REDIS_CLUSTER_NODES, validated by src/config.ts). */
export function parseClusterNodes(nodes: string): { host: string; port: number }[] {
  return nodes
    .split(",")
    .map((node) => node.trim())
    .filter(Boolean)
    .map((node) => {
      const at = node.lastIndexOf(":");
      const host = node.slice(0, at).replace(/^\[(.*)\]$/, "$1");
      const port = Number(node.slice(at + 1));
      if (at <= 0 || host === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw new Error(`not a host:port cluster node: ${JSON.stringify(node)}`);
      }
      return { host, port };
    });
}

/**
 * A Redis Cluster client over the seed nodes `nodes` ("host:port,..."). Each node connection gets the
 * timeouts and keepalive of a single connection; the cluster client follows MOVED/ASK, re-reads the
 * slot map after a failover and retries a command whose node connection closed (`retryDelayOnFailover`).
 * The keys one command or Lua script touches share a hash tag (src/adapters/redis-keys.ts).
 */
export function createRedisClusterClient(nodes: string, options: RedisClientOptions): Cluster {
  const perNode = timeouts(options);
  const clusterOptions: ClusterOptions = {
    // Commands wait in the client while no slot map is known (start-up, every node lost) unless the
    // caller must not wait; past that, a node's commands fail or time out as on one connection.
    enableOfflineQueue: !options.failFastWhenDisconnected,
    clusterRetryStrategy: reconnectDelay,
    // A lost node is found again through the slot map, re-read at once on MOVED / a closed
    // connection, and at least this often otherwise.
    slotsRefreshInterval: 2_000,
    slotsRefreshTimeout: 1_000,
    // A command whose node connection closed is sent again elsewhere after this delay, unless commands
    // time out: the cluster client would also send again those already rejected by their timeout
    // (see timeouts()). Then the caller sees the failure at once and retries by itself.
    retryDelayOnFailover: perNode.commandTimeout === undefined ? 200 : 0,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    redisOptions: { connectionName: options.name, ...perNode },
    // Grouped per node: a pipeline only holds commands whose slots that node serves.
    enableAutoPipelining: options.autoPipelining === true,
    lazyConnect: false,
  };
  return new Cluster(parseClusterNodes(nodes), clusterOptions);
}

/** The client `target` asks for: a Cluster client when it names cluster nodes, else one connection. */
export function createRedisConnection(target: RedisTarget, options: RedisClientOptions): RedisConnection {
  return target.clusterNodes
    ? createRedisClusterClient(target.clusterNodes, options)
    : createRedisClient(target.url, options);
}

/** The Redis of a process's configuration: REDIS_CLUSTER_NODES when set, else REDIS_URL. */
export function redisTarget(config: { REDIS_URL: string; REDIS_CLUSTER_NODES?: string | undefined }) {
  return { url: config.REDIS_URL, clusterNodes: config.REDIS_CLUSTER_NODES } satisfies RedisTarget;
}

/** Waits up to `ms` for the first connection; never throws (Redis down must not stop the API starting). */
export async function awaitConnection(redis: RedisConnection, ms: number): Promise<boolean> {
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

export async function pingRedis(redis: RedisConnection): Promise<boolean> {
  return (await redis.ping()) === "PONG";
}

/**
 * Closes a connection and never throws: QUIT when connected, waiting for it at most `quitTimeoutMs`
 * (a stopped or partitioned Redis never answers), then disconnect whatever came of it.
 */
export async function closeRedis(redis: RedisConnection, quitTimeoutMs = 1_000): Promise<void> {
  if (redis.status === "ready") {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        redis.quit(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, quitTimeoutMs);
        }),
      ]);
    } catch {
      // A failed QUIT: the disconnect below closes the connection.
    } finally {
      clearTimeout(timer);
    }
  }
  try {
    redis.disconnect();
  } catch {
    // Already closed.
  }
}
