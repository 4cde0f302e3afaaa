/**
 * The only module that reads `process.env`. Every variable is validated at start; a bad value stops the
 * process with one message that names every bad variable (never its value when it may hold a secret).
 */
import { type Static, Type as T } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { MongoClient } from "mongodb";

const Int = (min: number, max: number, def: number) =>
  T.Integer({ minimum: min, maximum: max, default: def });
const Num = (min: number, max: number, def: number) => T.Number({ minimum: min, maximum: max, default: def });

/** host:port (a name, an IPv4 address or a bracketed IPv6 address), comma-separated. */
const CLUSTER_NODE = String.raw`(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}`;
const CLUSTER_NODES_PATTERN = `^${CLUSTER_NODE}(?:,${CLUSTER_NODE})*$`;

/** Variable name -> schema. Defaults are the documented safe defaults (README, configuration table). */
const ConfigSchema = T.Object({
  /** The public port: the API (api, all) or the simulated venue (exchange); actors open none. */
  PORT: Int(0, 65535, 3000),
  /**
   * The operations port of every process kind: /health/live, /health/ready and /metrics, apart from the
   * public port so that the public Service never exposes them. 0 picks a free port (tests).
   */
  OPS_PORT: Int(0, 65535, 9464),
  /** `api-key`: every /orders request needs `Authorization: Bearer <key>`. `off`: local experiments only. */
  AUTH_MODE: T.Union([T.Literal("api-key"), T.Literal("off")], { default: "api-key" }),
  /** How long a key's look-up is reused: the most a revocation takes to take effect. */
  AUTH_CACHE_TTL_MS: Int(0, 60_000, 5_000),
  /** Requests per second one account may send to /orders (steady rate); 0 turns rate limiting off. */
  RATE_LIMIT_PER_SECOND: Num(0, 1_000_000, 200),
  /** Requests an idle account may send at once above its rate. */
  RATE_LIMIT_BURST: Int(1, 1_000_000, 400),
  /** The API reference page (/swagger) and its OpenAPI document (/swagger/json); `false` removes both. */
  DOCS_ENABLED: T.Union([T.Literal("true"), T.Literal("false")], { default: "true" }),
  /**
   * The simulated venue's admin token: its /admin routes need `Authorization: Bearer <token>`. Unset:
   * the admin routes answer 403 (they can stop the venue).
   */
  EXCHANGE_ADMIN_TOKEN: T.Optional(T.String({ minLength: 16, maxLength: 200 })),
  /** Checked by the driver's own parser in loadConfig (several hosts, options, mongodb+srv). */
  MONGO_URL: T.String({ minLength: 1, default: "mongodb://127.0.0.1:27017/orders" }),
  REDIS_URL: T.String({ pattern: "^rediss?://.+", default: "redis://127.0.0.1:6379" }),
  /**
   * Seed nodes of a Redis Cluster ("host:port,host:port,..."): when set, every Redis connection is a
   * Cluster client over them (REDIS_URL is then unused). Unset: one Redis at REDIS_URL.
   */
  REDIS_CLUSTER_NODES: T.Optional(T.String({ pattern: CLUSTER_NODES_PATTERN })),
  EXCHANGE_URL: T.Optional(T.String({ pattern: "^https?://.+" })),
  EXCHANGE_FAILURE_RATE: Num(0, 1, 0.1),
  EXCHANGE_LATENCY_MS: Int(0, 600_000, 500),
  LOG_LEVEL: T.Union([T.Literal("debug"), T.Literal("info"), T.Literal("warn"), T.Literal("error")], {
    default: "info",
  }),
  /** This host's name (Kubernetes sets it to the pod name): part of each actor's consumer name. */
  HOSTNAME: T.String({ pattern: "^[A-Za-z0-9._-]{1,253}$", default: "local" }),
  /** Prefix of every Redis key this deployment uses; lets tests and tenants share one Redis. */
  REDIS_KEY_PREFIX: T.String({ pattern: "^[A-Za-z0-9:_-]{1,64}$", default: "orders" }),
  /** Number of placement streams; orders are spread over them by id (Redis Cluster hash tags). */
  PLACEMENT_PARTITIONS: Int(1, 1024, 1),
  /** Messages one actor process works on at once. */
  ACTOR_CONCURRENCY: Int(1, 10_000, 256),
  /** A pending entry idle this long belongs to a dead or hung actor and is reclaimed. */
  CLAIM_TIMEOUT_MS: Int(1_000, 3_600_000, 30_000),
  /** How often the reclaimer looks for idle pending entries. */
  RECLAIM_INTERVAL_MS: Int(100, 600_000, 5_000),
  /** How often the sweeper looks for orders that are due for (re-)dispatch. */
  SWEEP_INTERVAL_MS: Int(100, 600_000, 1_000),
  /** An accepted order not picked up this long after intake is re-dispatched by the sweeper. */
  DISPATCH_GRACE_MS: Int(100, 3_600_000, 10_000),
  /** Deliveries without progress after which an entry is moved to the dead-letter stream. */
  MAX_DELIVERIES: Int(2, 1_000, 10),
  /** One placement attempt is abandoned (and aborted) after this long. */
  BREAKER_TIMEOUT_MS: Int(100, 600_000, 5_000),
  /** Failure percentage over the rolling window that opens the breaker. */
  BREAKER_ERROR_THRESHOLD_PERCENT: Int(1, 100, 50),
  /** Minimum calls in the window before the breaker may open. */
  BREAKER_VOLUME_THRESHOLD: Int(1, 100_000, 10),
  /** How long an open breaker waits before letting one trial call through. */
  BREAKER_RESET_TIMEOUT_MS: Int(100, 3_600_000, 10_000),
  /**
   * Venue attempts after which an order that keeps failing transiently is parked (and alerted on)
   * instead of retried; 0 = never (placement is guaranteed, retries are patient).
   */
  PLACEMENT_MAX_ATTEMPTS: Int(0, 1_000_000, 0),
  /**
   * Age (since intake) past which an order that keeps failing transiently is parked (and alerted on)
   * instead of retried: an order placed an hour late is not what its client asked for; an operator
   * replays it or not. 0 = never.
   */
  PLACEMENT_MAX_AGE_MS: Int(0, 7 * 86_400_000, 3_600_000),
  /** First retry delay of a transiently failed placement; doubles per attempt, with full jitter. */
  RETRY_BASE_DELAY_MS: Int(1, 600_000, 200),
  /** Cap of the retry delay. */
  RETRY_MAX_DELAY_MS: Int(1, 3_600_000, 60_000),
  /** Timeout of one MongoDB operation on the request path (server selection, socket, write concern). */
  MONGO_TIMEOUT_MS: Int(100, 120_000, 2_000),
  /**
   * MongoDB connections of one process. The embedded store (FerretDB on PostgreSQL) deadlocks when its
   * clients together open more operations than its pool has connections (pool_max_conns=200 in the run
   * script and the test harness): keep the sum over all processes below that.
   */
  MONGO_MAX_POOL_SIZE: Int(1, 1_000, 32),
  /** MongoDB operations one process has waiting on the store at once; more queue in the process. */
  MONGO_MAX_IN_FLIGHT: Int(1, 1_000, 16),
  /** Intake group commit: concurrent orders within this window share one insertMany. */
  INTAKE_BATCH_WINDOW_MS: Int(0, 100, 2),
  /** Intake group commit: the most orders in one insertMany. */
  INTAKE_BATCH_MAX: Int(1, 1_000, 64),
  /**
   * Load shedding: while one of intake's MongoDB steps has waited this long, POST /orders answers 503
   * with Retry-After and stores nothing (src/orders/admission.ts); 0 = never shed.
   */
  INTAKE_SHED_AFTER_MS: Int(0, 120_000, 2_000),
  /**
   * How long Redis remembers an order's placement state (queued, retry, done). If Redis lost an entry but
   * kept its state, the sweeper re-dispatches the order after this long at the latest.
   */
  PLACEMENT_TRACK_TTL_MS: Int(60_000, 86_400_000, 900_000),
  /** How often due retries move from the retry schedule back onto the placement stream. */
  RETRY_POLL_INTERVAL_MS: Int(10, 60_000, 250),
  /** Timeout of the XADD on the request path; past it the order is dispatched by the sweeper. */
  REDIS_COMMAND_TIMEOUT_MS: Int(10, 60_000, 500),
  /**
   * Commands issued in the same turn of the event loop go to Redis in one write (ioredis
   * auto-pipelining) on each process's command connection: fewer system calls in the service and in
   * Redis (solution.md). `false`: one write per command.
   */
  REDIS_AUTO_PIPELINING: T.Union([T.Literal("true"), T.Literal("false")], { default: "true" }),
  /** Whole-request deadline of POST /orders; past it the answer is the 500 body. */
  REQUEST_DEADLINE_MS: Int(100, 120_000, 5_000),
  /** Idempotency keys are remembered at least this long. */
  IDEMPOTENCY_TTL_HOURS: Int(24, 24 * 30, 24),
  /** Deadline for draining in-flight work on SIGTERM. */
  SHUTDOWN_DEADLINE_MS: Int(100, 600_000, 20_000),
  /** How often the stream trimmer runs (XTRIM MINID below the oldest pending entry). */
  TRIM_INTERVAL_MS: Int(1_000, 3_600_000, 30_000),
  /** How often stream gauges (length, lag, pending, dead letters) are refreshed from Redis. */
  STREAM_METRICS_INTERVAL_MS: Int(500, 600_000, 5_000),

  // Execution reports (docs/adr/0006-execution-reports.md).
  /**
   * The venue's execution feed (a WebSocket), read by the `gateway` process. Unset: derived from
   * EXCHANGE_URL (http -> ws, path /executions); with neither, the gateway refuses to start.
   */
  EXCHANGE_FEED_URL: T.Optional(T.String({ pattern: "^wss?://.+" })),
  /** Executions streams; a report goes to the stream of its order id, so one order's reports stay together. */
  EXECUTION_PARTITIONS: Int(1, 1024, 2),
  /**
   * Reports one execution actor process holds at once (read, waiting for their batch, being written):
   * the more, the larger the batches under load, and the more of an order's reports share one write.
   */
  EXECUTION_CONCURRENCY: Int(1, 100_000, 4_000),
  /** The most reports one batch applies (one insertMany, one summary write per order); more wait. */
  EXECUTION_BATCH_MAX: Int(1, 10_000, 2_000),
  /**
   * How long a gateway's lease on the venue session lasts without renewal: a standby takes over at most
   * this long after the active gateway died (it renews every third of it).
   */
  GATEWAY_LEASE_MS: Int(1_000, 600_000, 5_000),
  /** First reconnect delay of the gateway after the feed dropped; doubles per failure, with jitter. */
  GATEWAY_RECONNECT_BASE_MS: Int(10, 60_000, 200),
  /** Cap of the gateway's reconnect delay. */
  GATEWAY_RECONNECT_MAX_MS: Int(100, 600_000, 10_000),
  /** Events kept per account for resuming /orders/events (older ones are trimmed). */
  ORDER_EVENTS_RETAINED: Int(100, 10_000_000, 10_000),
  /** The simulated venue's fill model: trade reports that fill an order (0: the venue sends no reports). */
  EXCHANGE_FILLS_PER_ORDER: Int(0, 1_000, 2),
  /** The simulated venue's fill model: delay before each report, after the acknowledgement. */
  EXCHANGE_FILL_DELAY_MS: Int(0, 600_000, 100),
  /**
   * The simulated venue's fill model: share of limit orders that trade only part of their quantity and
   * then end cancelled or expired (half each).
   */
  EXCHANGE_LIMIT_UNFILLED_RATE: Num(0, 1, 0.2),
});

export type Config = Static<typeof ConfigSchema>;

const NUMERIC = new Set(
  Object.entries(ConfigSchema.properties)
    .filter(([, schema]) => schema.type === "integer" || schema.type === "number")
    .map(([name]) => name),
);
const SECRET_BEARING = new Set(["MONGO_URL", "REDIS_URL", "EXCHANGE_ADMIN_TOKEN"]);

export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join("; ")}`);
    this.name = "ConfigError";
  }
}

/** Reads and validates the configuration; throws one ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const name of Object.keys(ConfigSchema.properties)) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    if (NUMERIC.has(name)) {
      const parsed = Number(value);
      raw[name] = value.trim() === "" || Number.isNaN(parsed) ? value : parsed;
    } else {
      raw[name] = value;
    }
  }
  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>;
  const seen = new Set<string>();
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    const name = error.path.split("/")[1] ?? error.path;
    if (seen.has(name)) continue;
    seen.add(name);
    const shown = SECRET_BEARING.has(name) ? "" : ` (got ${JSON.stringify(env[name])})`;
    problems.push(`${name} ${describe(name)}${shown}`);
  }
  const config = withDefaults as Config;
  if (!seen.has("MONGO_URL")) {
    try {
      parseMongoUrl(config.MONGO_URL);
    } catch (error) {
      problems.push(`MONGO_URL ${describe("MONGO_URL")}: ${(error as Error).message}`);
    }
  }
  if (
    !seen.has("REDIS_CLUSTER_NODES") &&
    config.REDIS_CLUSTER_NODES?.split(",").some((node) => {
      const port = Number(node.slice(node.lastIndexOf(":") + 1));
      return port < 1 || port > 65535;
    })
  ) {
    problems.push(`REDIS_CLUSTER_NODES ${describe("REDIS_CLUSTER_NODES")} (a port is not from 1 to 65535)`);
  }
  if (config.OPS_PORT !== 0 && config.OPS_PORT === config.PORT) {
    problems.push("OPS_PORT must differ from PORT (the operations routes are not served on the public port)");
  }
  if (config.GATEWAY_RECONNECT_MAX_MS < config.GATEWAY_RECONNECT_BASE_MS) {
    problems.push("GATEWAY_RECONNECT_MAX_MS must be at least GATEWAY_RECONNECT_BASE_MS");
  }
  if (config.RETRY_MAX_DELAY_MS < config.RETRY_BASE_DELAY_MS) {
    problems.push("RETRY_MAX_DELAY_MS must be at least RETRY_BASE_DELAY_MS");
  }
  // An actor submits only while its lease is younger than CLAIM_TIMEOUT_MS - BREAKER_TIMEOUT_MS, so that
  // the attempt (at most BREAKER_TIMEOUT_MS) ends before the lease does; that window must hold the
  // lease itself and the look-up at the venue, or every attempt is handed back unsubmitted. An order
  // leased ahead of a venue slot also waits in it, for one venue answer at most (BREAKER_TIMEOUT_MS):
  // a shorter window hands such orders back unsubmitted, which is safe but wasted (the default: 25 s).
  // (Each rule is checked only when its variables are valid on their own: one problem per variable.)
  const valid = (...names: string[]) => names.every((name) => !seen.has(name));
  const minSubmitWindowMs = 1_000;
  if (
    valid("CLAIM_TIMEOUT_MS", "BREAKER_TIMEOUT_MS") &&
    config.CLAIM_TIMEOUT_MS - config.BREAKER_TIMEOUT_MS < minSubmitWindowMs
  ) {
    problems.push(
      `CLAIM_TIMEOUT_MS must be at least BREAKER_TIMEOUT_MS + ${minSubmitWindowMs} ms (an attempt may start only while its lease is younger than CLAIM_TIMEOUT_MS - BREAKER_TIMEOUT_MS, and must end before the lease does)`,
    );
  }
  // POST /orders without an Idempotency-Key stores the order with one insert (src/orders/service.ts,
  // store()). An insert that MongoDB completes takes less than MONGO_TIMEOUT_MS to select a server (after
  // a failover) plus less than MONGO_TIMEOUT_MS of write-concern wait (wtimeout: past it the write is
  // ambiguous); one that cannot reach a server fails after MONGO_TIMEOUT_MS, and its read-back after
  // another. The request deadline must cover both, or a slow but working store answers 500 for orders
  // it goes on to store and place. Only a stalled connection (no answer: the operation's abort at 3 x
  // MONGO_TIMEOUT_MS) is left to the deadline: that 500 means "maybe stored", which the client resolves
  // with its Idempotency-Key or the X-Order-Id header. 6 x (insert and read-back each to their abort)
  // would make POST /orders wait 12 s by default, longer than a client waits for an answer.
  if (
    valid("REQUEST_DEADLINE_MS", "MONGO_TIMEOUT_MS") &&
    config.REQUEST_DEADLINE_MS < 2 * config.MONGO_TIMEOUT_MS
  ) {
    problems.push(
      "REQUEST_DEADLINE_MS must be at least 2 x MONGO_TIMEOUT_MS (a durable insert, server selection plus the write-concern wait, or a failed insert plus its read-back, must end within the request's deadline)",
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function describe(name: string): string {
  const schema = (
    ConfigSchema.properties as Record<
      string,
      { type?: string; minimum?: number; maximum?: number; pattern?: string; anyOf?: { const: string }[] }
    >
  )[name];
  if (!schema) return "is invalid";
  if (schema.anyOf) return `must be one of ${schema.anyOf.map((s) => s.const).join(", ")}`;
  if (schema.type === "integer") return `must be an integer from ${schema.minimum} to ${schema.maximum}`;
  if (schema.type === "number") return `must be a number from ${schema.minimum} to ${schema.maximum}`;
  if (name === "MONGO_URL")
    return "must be a mongodb:// or mongodb+srv:// connection string with the database in its path";
  if (name === "REDIS_URL") return "must be a redis:// or rediss:// URL";
  if (name === "REDIS_CLUSTER_NODES") return "must be host:port[,host:port...] (the cluster's seed nodes)";
  if (name === "EXCHANGE_URL") return "must be an http:// or https:// URL";
  if (name === "EXCHANGE_FEED_URL") return "must be a ws:// or wss:// URL";
  if (name === "EXCHANGE_ADMIN_TOKEN") return "must be 16 to 200 characters";
  return `must match ${schema.pattern}`;
}

export interface MongoUrl {
  /** The database named in the path, decoded ("" when none and `requireDatabase` is false). */
  database: string;
  /** host:port of every seed host; empty for mongodb+srv (resolved by DNS when connecting). */
  hosts: string[];
  /** The SRV name of a mongodb+srv URL. */
  srvHost?: string;
  /** The options as written: "?replicaSet=rs0&..." or "". */
  search: string;
}

// The split the driver's parser (mongodb-connection-string-url) makes: userinfo, host list, rest.
const MONGO_URL_PARTS =
  /^(?<protocol>[^/]+):\/\/(?:(?<username>[^:@]*)(?::(?<password>[^@]*))?@)?(?<hosts>(?!:)[^/?@]*)(?<rest>.*)/;
// MongoDB's restrictions on database names (https://www.mongodb.com/docs/manual/reference/limits/).
const BAD_DATABASE_CHARACTERS = /[/\\. "$*<>:|?\0]/;

/**
 * Parses a MongoDB connection string with the driver's own parser (without connecting, and without DNS
 * for mongodb+srv), and requires a database in its path unless told otherwise: the driver would
 * silently use `test`. Throws an Error whose message never contains the credentials.
 */
export function parseMongoUrl(mongoUrl: string, { requireDatabase = true } = {}): MongoUrl {
  const parts = MONGO_URL_PARTS.exec(mongoUrl)?.groups ?? {};
  // Some parser messages quote the input (whatwg-url's "Invalid URL: ..."): blank the credentials out.
  const secrets = [parts.password ?? "", (parts.username ?? "").length >= 3 ? parts.username! : ""];
  const redact = (message: string) =>
    secrets.filter(Boolean).reduce((text, secret) => text.split(secret).join("***"), message);
  let options: MongoClient["options"];
  try {
    options = new MongoClient(mongoUrl).options;
  } catch (error) {
    throw new Error(redact((error as Error).message));
  }
  const rest = parts.rest ?? "";
  const query = rest.indexOf("?");
  const path = (query === -1 ? rest : rest.slice(0, query)).replace(/^\//, "");
  const search = query === -1 ? "" : rest.slice(query);
  const found = { hosts: options.hosts.map(String), srvHost: options.srvHost, search };
  if (path === "") {
    if (!requireDatabase) return { database: "", ...found };
    throw new Error("no database in the path (mongodb://host/DATABASE)");
  }
  const database = options.dbName;
  if (BAD_DATABASE_CHARACTERS.test(database) || new TextEncoder().encode(database).length > 63) {
    throw new Error(`invalid database name ${JSON.stringify(database)}`);
  }
  return { database, ...found };
}

/** The venue's execution feed: EXCHANGE_FEED_URL, else derived from EXCHANGE_URL, else null. */
export function exchangeFeedUrl(config: Pick<Config, "EXCHANGE_FEED_URL" | "EXCHANGE_URL">): string | null {
  if (config.EXCHANGE_FEED_URL) return config.EXCHANGE_FEED_URL;
  if (!config.EXCHANGE_URL) return null;
  const url = new URL(config.EXCHANGE_URL);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = `${url.pathname.replace(/\/$/, "")}/executions`;
  return url.toString();
}

/** The database named in the path of MONGO_URL (any connection string the driver accepts). */
export function databaseName(mongoUrl: string): string {
  return parseMongoUrl(mongoUrl).database;
}
