/**
 * A PostgreSQL cluster of its own (Debian's server binaries) for FerretDB's postgresql handler, tuned
 * so that FerretDB's look-ups are index-backed (scripts/ferretdb-postgres.sql) and its pool fits.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../wait-for.ts";
import { spawnOwned } from "./child-process.ts";
import { OwnedServer } from "./owned-server.ts";

/** The event trigger that gives FerretDB's collections GIN indexes on _id and status. */
export const FERRETDB_POSTGRES_SQL = new URL("../../../scripts/ferretdb-postgres.sql", import.meta.url)
  .pathname;

/**
 * Settings of the private cluster (scripts/run-local.sh uses the same): custom plans for every
 * execution, since a generic plan of FerretDB's `_jsonb->$1 @> $2` cannot use the expression indexes;
 * connections for FerretDB's pool (pool_max_conns, ferretdb.ts) with room for psql and autovacuum.
 * fsync and synchronous_commit keep their defaults: the store stays durable.
 */
export const POSTGRES_SETTINGS = ["plan_cache_mode=force_custom_plan", "max_connections=300"];

/**
 * Set (to anything) by `bench:system --pg-stats` before its servers start: the cluster then loads
 * pg_stat_statements, which the benchmark reads to say which statements the store spent its time on.
 */
export const PG_STAT_STATEMENTS_ENV = "ORDERS_PG_STAT_STATEMENTS";
const statementStatistics = () => process.env[PG_STAT_STATEMENTS_ENV] !== undefined;

/**
 * PostgreSQL refuses to run as root, so as root it runs as the `postgres` user through setpriv, which
 * execs (the pid is the postmaster's). A kill is a crash: the postmaster and its backends get SIGKILL
 * together, and the next start recovers from the write-ahead log.
 */
export class PostgresServer extends OwnedServer {
  readonly kind = "postgres";
  constructor(
    port: number,
    dir: string,
    private readonly bin: string,
    /** Settings on top of POSTGRES_SETTINGS (a benchmark's variant). */
    private readonly extraSettings: string[] = [],
  ) {
    super(port, dir);
  }
  /** The `ferretdb` database, as the superuser `postgres` (trust authentication on loopback). */
  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/ferretdb`;
  }
  /** The same over the server's Unix socket (in its directory). */
  get socketUrl() {
    return `postgres://postgres@/ferretdb?host=${encodeURIComponent(this.dir)}&port=${this.port}`;
  }
  private get dataDir() {
    return join(this.dir, "data");
  }
  private asPostgres(): string[] {
    return process.getuid?.() === 0
      ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]
      : [];
  }
  protected command() {
    return [
      ...this.asPostgres(),
      join(this.bin, "postgres"),
      "-D",
      this.dataDir,
      "-p",
      String(this.port),
      "-k",
      this.dir,
      "-c",
      "listen_addresses=127.0.0.1",
      ...[...POSTGRES_SETTINGS, ...this.extraSettings].flatMap((setting) => ["-c", setting]),
      ...(statementStatistics()
        ? ["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track_planning=on"]
        : []),
    ];
  }
  protected async ready() {
    const probe = Bun.spawn(
      [join(this.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", String(this.port), "-d", "postgres"],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    return (await probe.exited) === 0;
  }
  /** Runs `sql` through psql in `database` and returns its unaligned, tuples-only output. */
  async psql(sql: string, database = "ferretdb"): Promise<string> {
    const psql = join(this.bin, "psql");
    return (
      await Bun.$`${psql} -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p ${this.port} -U postgres -tAc ${sql} ${database}`.text()
    ).trim();
  }
  override async start(): Promise<this> {
    if (!existsSync(join(this.dataDir, "PG_VERSION"))) {
      await Bun.$`mkdir -p ${this.dataDir}`.quiet();
      if (process.getuid?.() === 0) await Bun.$`chown -R postgres ${this.dir}`.quiet();
      // Owned like the server, so that a test process dying meanwhile leaves no initdb writing on.
      const initdb = spawnOwned(
        "initdb",
        [
          ...this.asPostgres(),
          join(this.bin, "initdb"),
          "-D",
          this.dataDir,
          "-A",
          "trust",
          "-U",
          "postgres",
          "-E",
          "UTF8",
          "--locale=C",
          "--no-sync",
        ],
        { cleanupDir: this.dir },
      );
      if ((await initdb.exited) !== 0) throw new Error(`initdb failed:\n${initdb.logs.slice(-2000)}`);
    }
    await super.start();
    if ((await this.psql("SELECT 1 FROM pg_database WHERE datname = 'ferretdb'", "postgres")) !== "1") {
      await Bun.$`${join(this.bin, "createdb")} -h 127.0.0.1 -p ${this.port} -U postgres ferretdb`.quiet();
    }
    const psql = join(this.bin, "psql");
    await Bun.$`${psql} -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p ${this.port} -U postgres -f ${FERRETDB_POSTGRES_SQL} ferretdb`.quiet();
    if (statementStatistics()) await this.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    return this;
  }
  override async kill() {
    const postmaster = this.process?.pid;
    if (postmaster === undefined) return;
    const backends = (await Bun.$`pgrep -P ${postmaster}`.nothrow().text()).split("\n").filter(Boolean);
    await Bun.$`kill -9 ${postmaster} ${backends}`.nothrow().quiet();
    await super.kill();
    // The next postmaster refuses to start while a backend still holds the old shared memory. A
    // zombie (dead, not yet reaped by whoever inherited it) holds none.
    await waitFor(() => !backends.some(running), { timeoutMs: 10_000, message: "postgres backends gone" });
  }
}

/** True while process `pid` exists and is not a zombie. */
function running(pid: string): boolean {
  try {
    if (!existsSync("/proc/self/stat")) return process.kill(Number(pid), 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The directory of PostgreSQL's server binaries: POSTGRES_BIN, else the newest /usr/lib/postgresql/N. */
export function postgresBinaries(): string {
  const versions = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql") : [];
  const candidates = [
    process.env.POSTGRES_BIN,
    ...versions.sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin`),
  ];
  const bin = candidates.find((c) => c !== undefined && existsSync(join(c, "postgres")));
  if (!bin) {
    throw new Error(
      "FerretDB on PostgreSQL needs PostgreSQL's server binaries (Debian: postgresql; bash .ci/run installs it)",
    );
  }
  return bin;
}

/**
 * True when FerretDB's postgresql backend can run here: PostgreSQL's server binaries are installed
 * and, as root, there is a `postgres` user to run them as (Debian's package creates it).
 */
export function postgresAvailable(): boolean {
  try {
    postgresBinaries();
  } catch {
    return false;
  }
  return (
    process.getuid?.() !== 0 ||
    Bun.spawnSync(["id", "-u", "postgres"], { stdio: ["ignore", "ignore", "ignore"] }).exitCode === 0
  );
}
