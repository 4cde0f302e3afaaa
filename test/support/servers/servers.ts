/**
 * Real servers for integration and fault tests, one file per server: a redis-server (redis.ts), a
 * Redis Cluster (redis-cluster.ts), and a MongoDB-wire server: an external one from TEST_MONGO_URL
 * (external.ts), else a real `mongod` when one is on PATH (mongod.ts), else FerretDB (ferretdb.ts) on
 * a PostgreSQL of its own (postgres.ts) wherever PostgreSQL's server binaries are installed, on SQLite
 * otherwise (TEST_FERRETDB_BACKEND=sqlite|postgresql chooses). Owned servers listen on free loopback
 * ports with fresh temporary directories, can be killed (-9), restarted on the same port and data,
 * paused (SIGSTOP) and resumed, and are stopped with their directories deleted (owned-server.ts).
 */
import { parseMongoUrl } from "../../../src/config.ts";
import { externalMongo } from "./external.ts";
import { startFerretOnPostgres, startFerretOnSqlite } from "./ferretdb.ts";
import { startMongod } from "./mongod.ts";
import type { TestServer } from "./owned-server.ts";
import { postgresAvailable } from "./postgres.ts";

export { FERRETDB_POOL_MAX_CONNS, FerretOnPostgres, ferretBinary } from "./ferretdb.ts";
export type { TestServer } from "./owned-server.ts";
export { POSTGRES_SETTINGS, PostgresServer, postgresAvailable } from "./postgres.ts";
export { startRedis } from "./redis.ts";
export { type ClusterNode, RedisCluster, startRedisCluster } from "./redis-cluster.ts";

export type FerretBackend = "sqlite" | "postgresql";

/** FerretDB's backend when none is asked for: TEST_FERRETDB_BACKEND, else PostgreSQL where installed. */
export function defaultFerretBackend(): FerretBackend {
  const backend = process.env.TEST_FERRETDB_BACKEND || (postgresAvailable() ? "postgresql" : "sqlite");
  if (backend !== "sqlite" && backend !== "postgresql") {
    throw new Error(`TEST_FERRETDB_BACKEND must be sqlite or postgresql, not ${backend}`);
  }
  return backend;
}

/**
 * The MongoDB-wire server: TEST_MONGO_URL, else a `mongod` on PATH, else FerretDB with the backend
 * asked for (default: defaultFerretBackend()).
 */
export async function startMongo(options: { ferretBackend?: FerretBackend } = {}): Promise<TestServer> {
  const external = process.env.TEST_MONGO_URL;
  if (external) return externalMongo(external);
  if (Bun.which("mongod")) return startMongod();
  const backend = options.ferretBackend ?? defaultFerretBackend();
  return backend === "postgresql" ? startFerretOnPostgres() : startFerretOnSqlite();
}

/** A MongoDB URL for `database` on `server`, with query options kept. */
export function mongoUrlFor(server: TestServer, database: string): string {
  const url = parseMongoUrl(server.url, { requireDatabase: false });
  return `mongodb://${url.hosts.join(",")}/${database}${url.search}`;
}
