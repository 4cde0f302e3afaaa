/**
 * FerretDB v1.24.2 (built by scripts/install-ferretdb.sh), the MongoDB-wire server where no mongod is
 * installed: on a PostgreSQL cluster of its own (the default wherever PostgreSQL's server binaries
 * are installed) or on SQLite (the fallback).
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { freePort } from "../wait-for.ts";
import { OwnedServer, type TestServer, tempDir } from "./owned-server.ts";
import { PostgresServer, postgresBinaries } from "./postgres.ts";

/**
 * FerretDB's pgx pool size (its default is 50). FerretDB deadlocks for good when its clients run more
 * concurrent operations than the pool has connections (an operation holding one connection waits
 * for a second one), so the sum of the MongoDB pools of every client of one FerretDB (the service's
 * MONGO_MAX_POOL_SIZE per process, default 32, plus the tests' own clients) must stay below it; and
 * it stays below PostgreSQL's max_connections (300, postgres.ts). scripts/run-local.sh uses the same.
 */
export const FERRETDB_POOL_MAX_CONNS = 200;

/**
 * Go's GC target for FerretDB (Go's default is 100). FerretDB allocates for every document it
 * converts; at 400 its own CPU per updateOne and findOne fell by 10-20% (bench/ferretdb-costs.ts) for
 * a heap of tens of MB more. scripts/run-local.sh uses the same.
 */
export const FERRETDB_GOGC = "400";

export class FerretServer extends OwnedServer {
  readonly kind = "ferretdb";
  constructor(
    port: number,
    dir: string,
    private readonly binary: string,
    /** --handler=sqlite (data in `dir`) or --handler=postgresql with its URL. */
    private readonly backend: string[] = ["--handler=sqlite", `--sqlite-url=file:${dir}/`],
    private readonly gogc = FERRETDB_GOGC,
    /** FerretDB's HTTP handlers (metrics, /debug/pprof): off unless a benchmark profiles it. */
    private readonly debugAddr = "-",
  ) {
    super(port, dir);
  }
  get url() {
    return `mongodb://127.0.0.1:${this.port}`;
  }
  protected command() {
    return [
      this.binary,
      ...this.backend,
      `--listen-addr=127.0.0.1:${this.port}`,
      `--debug-addr=${this.debugAddr}`,
      "--telemetry=disable",
      `--state-dir=${this.dir}`,
      "--log-level=error",
    ];
  }
  protected override env() {
    return { ...process.env, GOGC: this.gogc };
  }
  protected ready() {
    return mongoHello(this.url);
  }
}

/** FerretDB on its own PostgreSQL: the MongoDB-wire server is the pair, and a kill crashes both. */
export class FerretOnPostgres implements TestServer {
  readonly kind = "ferretdb-postgresql";
  readonly faultable = true;
  constructor(
    /** The cluster under FerretDB (psql() for EXPLAIN and statistics). */
    readonly postgres: PostgresServer,
    private readonly ferret: FerretServer,
  ) {}
  get url() {
    return this.ferret.url;
  }
  get port() {
    return this.ferret.port;
  }
  async start(): Promise<this> {
    await this.postgres.start();
    await this.ferret.start();
    return this;
  }
  async kill() {
    await Promise.all([this.ferret.kill(), this.postgres.kill()]);
  }
  async restart(options: { empty?: boolean } = {}) {
    await this.kill();
    await this.postgres.restart(options);
    await this.ferret.restart();
  }
  pause() {
    this.ferret.pause();
  }
  resume() {
    this.ferret.resume();
  }
  async stop() {
    await this.ferret.stop();
    await this.postgres.stop();
  }
}

/**
 * FerretDB on PostgreSQL pushes equality filters down (`_id` even when a filter has more conditions),
 * and the GIN indexes of scripts/ferretdb-postgres.sql serve them: a conditional update costs an index
 * look-up, where SQLite's handler scans the collection.
 */
export async function startFerretOnPostgres(
  options: {
    gogc?: string;
    /** Benchmarks' variants: PostgreSQL settings on top of the harness's, FerretDB over the Unix socket. */
    postgresSettings?: string[];
    unixSocket?: boolean;
    /** host:port of FerretDB's /debug/pprof (bench/ferretdb-profile.ts). */
    debugAddr?: string;
  } = {},
): Promise<FerretOnPostgres> {
  const postgres = new PostgresServer(
    await freePort(),
    tempDir("postgres"),
    postgresBinaries(),
    options.postgresSettings,
  );
  const url = options.unixSocket ? `${postgres.socketUrl}&` : `${postgres.url}?`;
  const ferret = new FerretServer(
    await freePort(),
    tempDir("ferretdb"),
    ferretBinary(),
    ["--handler=postgresql", `--postgresql-url=${url}pool_max_conns=${FERRETDB_POOL_MAX_CONNS}`],
    options.gogc,
    options.debugAddr,
  );
  return new FerretOnPostgres(postgres, ferret).start();
}

/** FerretDB on SQLite: where PostgreSQL cannot be installed. Every update scans its collection. */
export async function startFerretOnSqlite(): Promise<TestServer> {
  return new FerretServer(await freePort(), tempDir("ferretdb"), ferretBinary()).start();
}

export function ferretBinary(): string {
  const binary = process.env.FERRETDB_BIN ?? join(homedir(), ".cache/orders-service/bin/ferretdb");
  if (!existsSync(binary)) {
    throw new Error(`no mongod on PATH and no FerretDB at ${binary}: run scripts/install-ferretdb.sh`);
  }
  return binary;
}

async function mongoHello(url: string): Promise<boolean> {
  const { MongoClient } = await import("mongodb");
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 1_000, connectTimeoutMS: 1_000 });
  try {
    return (await client.db("admin").command({ ping: 1 }, { signal: AbortSignal.timeout(3_000) })).ok === 1;
  } finally {
    await client.close();
  }
}
