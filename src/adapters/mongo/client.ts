/**
 * The MongoDB client and the options every operation carries. Every write that a 201 or a state change
 * relies on uses write concern {w: "majority", j: true} with a timeout. The same code runs on MongoDB
 * and on FerretDB v1.24 (no TTL or partial indexes, no Decimal128, write concerns accepted but ignored).
 */
import type {
  Collection,
  Db,
  Document,
  IndexDescription,
  MongoBulkWriteError,
  MongoClient,
  WriteConcernSettings,
} from "mongodb";
import { MongoClient as Client, MongoError, MongoNetworkError, MongoServerError } from "mongodb";

export interface MongoClientSettings {
  timeoutMs: number;
  /**
   * Connections of this process. Also the most operations it can have at the server at once: the
   * embedded store (FerretDB on PostgreSQL) deadlocks when its clients together open more operations
   * than its own pool has connections, so the sum over all processes must stay below that pool.
   */
  maxPoolSize: number;
}

export function createMongoClient(url: string, settings: MongoClientSettings): MongoClient {
  const { timeoutMs } = settings;
  const client = new Client(url, {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    // Every operation of the service carries its own abort deadline (operationDeadline, scanDeadline),
    // which closes the connection it aborts; this only bounds the driver's own commands, and must not
    // cut a background scan short.
    socketTimeoutMS: timeoutMs * 10,
    waitQueueTimeoutMS: timeoutMs,
    heartbeatFrequencyMS: 2_000,
    maxPoolSize: settings.maxPoolSize,
    appName: "orders-service",
    // Off: it costs every command two events and a full decode of its reply (operation-counter.ts).
    monitorCommands: false,
  });
  restartStuckMonitors(client, timeoutMs * 2 + 5_000);
  return client;
}

type MonitorHandle = { close(): void; connect(): void };

/**
 * Under Bun 1.4 with driver 7.9, a server heartbeat can hang for good when the server dies during the
 * monitor's reconnect handshake (the driver awaits a socket 'drain' that never comes, and no timeout
 * covers it). The server then stays Unknown and every operation fails server selection long after the
 * server is back (seen with MongoDB-wire server restarts under load; Node with the same driver recovers).
 * A heartbeat that has neither succeeded nor failed after `stuckAfterMs` (past its own connect and
 * socket timeouts) gets its monitor restarted. Uses the driver's internal topology: if a driver
 * upgrade moves it, this does nothing.
 */
function restartStuckMonitors(client: MongoClient, stuckAfterMs: number): void {
  const started = new Map<string, number>();
  client.on("serverHeartbeatStarted", (event) => {
    if (!started.has(event.connectionId)) started.set(event.connectionId, Date.now());
  });
  const done = (event: { connectionId: string }) => started.delete(event.connectionId);
  client.on("serverHeartbeatSucceeded", done);
  client.on("serverHeartbeatFailed", done);
  const timer = setInterval(
    () => {
      try {
        for (const [address, since] of started) {
          if (Date.now() - since < stuckAfterMs) continue;
          started.delete(address);
          const servers = (client as unknown as { topology?: { s?: { servers?: Map<string, unknown> } } })
            .topology?.s?.servers;
          const monitor = (servers?.get(address) as { monitor?: MonitorHandle } | undefined)?.monitor;
          if (typeof monitor?.close !== "function" || typeof monitor.connect !== "function") continue;
          monitor.close();
          monitor.connect();
        }
      } catch {
        // A driver internal that moved must not become an uncaught exception inside a timer.
      }
    },
    Math.max(500, Math.floor(stuckAfterMs / 4)),
  );
  timer.unref();
  client.on("topologyClosed", () => clearInterval(timer));
}

export const DUPLICATE_KEY = 11000;

/**
 * Runs `write` again once when it failed the way the driver's retryable writes retry (a network error,
 * or a server error labelled RetryableWriteError: a failover). For writes the driver cannot retry
 * itself (a bulkWrite with multi-updates), and that are idempotent: the second try must be harmless
 * when the first one reached the server.
 */
export async function retriedOnce<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const retryable =
      error instanceof MongoNetworkError ||
      (error instanceof MongoError && error.hasErrorLabel("RetryableWriteError"));
    if (!retryable) throw error;
    return write();
  }
}

/**
 * Whether an unordered insertMany that failed with `writeErrors` of its documents stored all the
 * others for certain: the server's count must say so and no write concern may have failed. The driver
 * also reports a connection lost mid-batch as a bulk write error without write errors, and then the
 * rest are ambiguous.
 */
export function storedAllOthers(error: MongoBulkWriteError, documents: number, writeErrors: number): boolean {
  const inserted = error.result?.insertedCount ?? -1;
  return !hasWriteConcernError(error) && inserted === documents - writeErrors;
}

/** The bulk's write concern failed: none of its writes is known to be durable. */
export function hasWriteConcernError(error: MongoBulkWriteError): boolean {
  return error.result?.getWriteConcernError?.() !== undefined;
}

/**
 * Each failed write of a bulk, by its index in the bulk: a server error with the write's own message
 * and code, or what `describe` makes of it (a duplicate key as a domain error, say).
 */
export function writeErrorsByIndex(
  error: MongoBulkWriteError,
  describe: (code: number | undefined, index: number) => Error | undefined = () => undefined,
): Map<number, Error> {
  const failed = new Map<number, Error>();
  for (const writeError of [error.writeErrors].flat())
    failed.set(
      writeError.index,
      describe(writeError.code, writeError.index) ??
        new MongoServerError({ message: writeError.errmsg ?? "write error", code: writeError.code }),
    );
  return failed;
}

/**
 * An abort deadline for one operation: server selection, a write-concern wait and a round trip
 * (MONGO_TIMEOUT_MS each). The driver's own timeouts do not cover a write that Bun 1.4
 * buffers on a connection the server reset: its socket then emits neither 'drain' nor 'error', and
 * driver 7 ignores `timeoutMS`, so without a signal such an operation waits forever (seen: kill -9 of
 * the server between two writes of one client). The driver honours `signal` on every operation and
 * closes the connection it aborts.
 */
export function operationDeadline(timeoutMs: number): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(timeoutMs * 3) };
}

/**
 * The deadline of the background scans (the sweeper's pass, the end-to-end monitor, the parked list):
 * ten times MONGO_TIMEOUT_MS. They serve no request, and their timers keep them to a share of the time.
 * The embedded store reads every waiting order for them (FerretDB filters and sorts itself): at a
 * backlog of 30,000 a scan took more than the 6 s of the operations' deadline and failed each time
 * (the store still did the work), so the sweeper stopped re-driving orders while the backlog lasted.
 */
export function scanDeadline(timeoutMs: number): { signal: AbortSignal } {
  return { signal: AbortSignal.timeout(timeoutMs * 10) };
}

/** Options for a write that a 201 or a state change relies on; fresh for each operation. */
export function durableWrite(timeoutMs: number): { writeConcern: WriteConcernSettings; signal: AbortSignal } {
  return {
    writeConcern: { w: "majority", journal: true, wtimeoutMS: timeoutMs },
    ...operationDeadline(timeoutMs),
  };
}

const NAMESPACE_EXISTS = 48;
function ignoreNamespaceExists(error: unknown) {
  if ((error as { code?: number }).code !== NAMESPACE_EXISTS) throw error;
}

/** Whether `db` is served by FerretDB (its buildInfo names its version); asked once per Db. */
export function isFerretDB(db: Db): Promise<boolean> {
  let known = servedByFerretDB.get(db);
  if (known === undefined) {
    known = db
      .admin()
      .command({ buildInfo: 1 })
      .then((info) => typeof info.ferretdbVersion === "string");
    // A failed question (the store not up yet) is asked again next time.
    known.catch(() => servedByFerretDB.delete(db));
    servedByFerretDB.set(db, known);
  }
  return known;
}
const servedByFerretDB = new WeakMap<Db, Promise<boolean>>();

/**
 * Creates the indexes that are missing, one call each. Idempotent on every start of every process.
 * (FerretDB v1.24 drops the connection when one createIndexes call re-creates several existing indexes.)
 * No operation deadline here: building an index on a large collection may rightly take minutes, and a
 * process that never gets past start-up is never ready, so it takes no traffic.
 *
 * On FerretDB only the indexes that enforce something (unique, TTL) are made. FerretDB v1 passes only
 * equality filters to its backend and sorts in insertion order only, so it never reads a plain secondary
 * index, while every insert and update pays for one: the orders' four made an updateOne and an insert
 * about 8% dearer in store CPU (bench/ferretdb-costs.ts). Its equality look-ups are served
 * by the GIN indexes of scripts/ferretdb-postgres.sql instead. MongoDB gets every index.
 */
export async function ensureIndexes<T extends Document>(
  db: Db,
  collection: Collection<T>,
  specs: IndexDescription[],
): Promise<void> {
  const enforcing = (spec: IndexDescription) => spec.unique === true || spec.expireAfterSeconds !== undefined;
  const ferret = await isFerretDB(db);
  const wanted = ferret ? specs.filter(enforcing) : specs;
  // The collection exists after start-up either way (on FerretDB: its table, with the GIN indexes).
  if (ferret) await db.createCollection(collection.collectionName).catch(ignoreNamespaceExists);
  const existing = new Set(
    (
      await collection
        .listIndexes()
        .toArray()
        .catch(() => [] as { name?: string }[])
    ).map((index) => index.name),
  );
  for (const { key, ...options } of wanted) {
    if (!existing.has(options.name)) await collection.createIndex(key, options);
  }
}

/**
 * Backpressure towards the store: at most `limit` operations of this process wait on MongoDB at once;
 * the rest queue here, in order, instead of in the driver's pool (where they would fail after
 * waitQueueTimeoutMS). A slow store then slows its callers down rather than failing them.
 */
export function boundedInFlight(limit: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    active -= 1;
    waiting.shift()?.();
  };
  return {
    get active() {
      return active;
    },
    get waiting() {
      return waiting.length;
    },
    async run<T>(operation: () => Promise<T>): Promise<T> {
      if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
      active += 1;
      try {
        return await operation();
      } finally {
        release();
      }
    },
  };
}

export type InFlightGate = ReturnType<typeof boundedInFlight>;
