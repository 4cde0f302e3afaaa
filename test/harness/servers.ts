/**
 * Real servers for integration and fault tests: a redis-server and a MongoDB-wire server (a real
 * `mongod` when one is on PATH, an external one from TEST_MONGO_URL, else FerretDB on SQLite, or on a
 * PostgreSQL of its own with TEST_FERRETDB_BACKEND=postgresql) on free loopback ports with fresh
 * temporary data directories. Each can be killed (-9), restarted on the same port and data, paused
 * (SIGSTOP) and resumed, and is stopped with its directory deleted afterwards.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { parseMongoUrl } from "../../src/config.ts";
import { type OwnedProcess, spawnOwned } from "./child-process.ts";
import { freePort, waitFor } from "./wait-for.ts";

export interface TestServer {
  readonly kind: string;
  /** Base URL without a database, e.g. mongodb://127.0.0.1:40123 or redis://127.0.0.1:40124 */
  readonly url: string;
  readonly port: number;
  /** False for an external server the harness does not own (no fault injection). */
  readonly faultable: boolean;
  kill(): Promise<void>;
  /** Starts it again on the same port (and data directory unless `empty`) and waits until it answers. */
  restart(options?: { empty?: boolean }): Promise<void>;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

abstract class OwnedServer implements TestServer {
  abstract readonly kind: string;
  abstract readonly url: string;
  readonly faultable = true;
  protected process: OwnedProcess | undefined;
  private stopped = false;

  constructor(
    readonly port: number,
    protected readonly dir: string,
  ) {}

  protected abstract command(): string[];
  protected abstract ready(): Promise<boolean>;
  protected async afterStart(): Promise<void> {}

  async start(): Promise<this> {
    this.process = spawnOwned(this.kind, this.command(), { cleanupDir: this.dir });
    await waitFor(() => this.ready(), {
      timeoutMs: 30_000,
      intervalMs: 50,
      message: `${this.kind} on ${this.port}`,
    }).catch((error) => {
      throw new Error(`${error.message}\n${this.process?.logs.slice(-2000)}`);
    });
    await this.afterStart();
    return this;
  }

  async kill() {
    await this.process?.kill();
  }

  async restart(options: { empty?: boolean } = {}) {
    await this.kill();
    if (options.empty) {
      rmSync(this.dir, { recursive: true, force: true });
    }
    await Bun.$`mkdir -p ${this.dir}`.quiet();
    await this.start();
  }

  pause() {
    this.process?.signal("SIGSTOP");
  }

  resume() {
    this.process?.signal("SIGCONT");
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.resume();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

class RedisServer extends OwnedServer {
  readonly kind = "redis-server";
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  protected command() {
    return [
      "redis-server",
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--dir",
      this.dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
      "--loglevel",
      "warning",
    ];
  }
  protected ready() {
    return respondsTo(this.port, "PING\r\n", "+PONG");
  }
}

class FerretServer extends OwnedServer {
  readonly kind = "ferretdb";
  constructor(
    port: number,
    dir: string,
    private readonly binary: string,
    /** --handler=sqlite (data in `dir`) or --handler=postgresql with its URL. */
    private readonly backend: string[] = ["--handler=sqlite", `--sqlite-url=file:${dir}/`],
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
      "--debug-addr=-",
      "--telemetry=disable",
      `--state-dir=${this.dir}`,
      "--log-level=error",
    ];
  }
  protected ready() {
    return mongoHello(this.url);
  }
}

/**
 * A PostgreSQL server of its own (Debian's binaries) for FerretDB's postgresql handler. PostgreSQL
 * refuses to run as root, so as root it runs as the `postgres` user through setpriv, which execs (the
 * pid is the postmaster's). A kill is a crash: the postmaster and its backends get SIGKILL together,
 * and the next start recovers from the write-ahead log.
 */
class PostgresServer extends OwnedServer {
  readonly kind = "postgres";
  constructor(
    port: number,
    dir: string,
    private readonly bin: string,
  ) {
    super(port, dir);
  }
  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/ferretdb`;
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
    ];
  }
  protected async ready() {
    const probe = Bun.spawn(
      [join(this.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", String(this.port), "-d", "postgres"],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    return (await probe.exited) === 0;
  }
  override async start(): Promise<this> {
    if (!existsSync(join(this.dataDir, "PG_VERSION"))) {
      await Bun.$`mkdir -p ${this.dataDir}`.quiet();
      if (process.getuid?.() === 0) await Bun.$`chown -R postgres ${this.dir}`.quiet();
      await Bun.$`${this.asPostgres()} ${join(this.bin, "initdb")} -D ${this.dataDir} -A trust -U postgres --no-sync`.quiet();
    }
    await super.start();
    const exists =
      await Bun.$`${join(this.bin, "psql")} -h 127.0.0.1 -p ${this.port} -U postgres -tAc ${"SELECT 1 FROM pg_database WHERE datname = 'ferretdb'"} postgres`.text();
    if (exists.trim() !== "1") {
      await Bun.$`${join(this.bin, "createdb")} -h 127.0.0.1 -p ${this.port} -U postgres ferretdb`.quiet();
    }
    return this;
  }
  override async kill() {
    const postmaster = this.process?.pid;
    if (postmaster === undefined) return;
    const backends = (await Bun.$`pgrep -P ${postmaster}`.nothrow().text()).split("\n").filter(Boolean);
    await Bun.$`kill -9 ${postmaster} ${backends}`.nothrow().quiet();
    await super.kill();
    // The next postmaster refuses to start while a backend still holds the old shared memory.
    const alive = async () =>
      backends.length > 0 && (await Bun.$`kill -0 ${backends}`.nothrow().quiet()).exitCode === 0;
    await waitFor(async () => !(await alive()), { timeoutMs: 10_000, message: "postgres backends gone" });
  }
}

/** FerretDB on its own PostgreSQL: the MongoDB-wire server is the pair, and a kill crashes both. */
class FerretOnPostgres implements TestServer {
  readonly kind = "ferretdb-postgresql";
  readonly faultable = true;
  constructor(
    private readonly postgres: PostgresServer,
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

class MongodServer extends OwnedServer {
  readonly kind = "mongod";
  get url() {
    return `mongodb://127.0.0.1:${this.port}/?directConnection=true`;
  }
  protected command() {
    return [
      "mongod",
      "--port",
      String(this.port),
      "--bind_ip",
      "127.0.0.1",
      "--dbpath",
      this.dir,
      "--replSet",
      "rs0",
      "--quiet",
    ];
  }
  protected ready() {
    return respondsTo(this.port, null, null);
  }
  protected override async afterStart() {
    const { MongoClient } = await import("mongodb");
    const client = new MongoClient(this.url, { serverSelectionTimeoutMS: 5_000 });
    try {
      await client
        .db("admin")
        .command({ replSetInitiate: { _id: "rs0", members: [{ _id: 0, host: `127.0.0.1:${this.port}` }] } });
    } catch (error) {
      if ((error as { codeName?: string }).codeName !== "AlreadyInitialized") throw error;
    }
    await waitFor(async () => (await client.db("admin").command({ hello: 1 })).isWritablePrimary, {
      timeoutMs: 30_000,
      message: "mongod primary",
    });
    await client.close();
  }
}

class ExternalServer implements TestServer {
  readonly kind = "external-mongodb";
  readonly faultable = false;
  readonly port: number;
  constructor(readonly url: string) {
    this.port = Number(parseMongoUrl(url, { requireDatabase: false }).hosts[0]?.split(":").at(-1) ?? 27017);
  }
  private refuse(): never {
    throw new Error("fault injection needs a server the harness owns; unset TEST_MONGO_URL");
  }
  async kill() {
    this.refuse();
  }
  async restart() {
    this.refuse();
  }
  pause() {
    this.refuse();
  }
  resume() {
    this.refuse();
  }
  async stop() {}
}

export async function startRedis(): Promise<TestServer> {
  return new RedisServer(await freePort(), tempDir("redis")).start();
}

export type FerretBackend = "sqlite" | "postgresql";

/**
 * The MongoDB-wire server: TEST_MONGO_URL, else a `mongod` on PATH, else FerretDB with the backend
 * asked for (default: TEST_FERRETDB_BACKEND, else SQLite).
 */
export async function startMongo(options: { ferretBackend?: FerretBackend } = {}): Promise<TestServer> {
  const external = process.env.TEST_MONGO_URL;
  if (external) return new ExternalServer(external.replace(/\/[^/?]*(\?|$)/, "$1"));
  if (Bun.which("mongod")) return new MongodServer(await freePort(), tempDir("mongod")).start();
  const backend = options.ferretBackend ?? process.env.TEST_FERRETDB_BACKEND ?? "sqlite";
  if (backend === "postgresql") return startFerretOnPostgres();
  if (backend !== "sqlite")
    throw new Error(`TEST_FERRETDB_BACKEND must be sqlite or postgresql, not ${backend}`);
  return new FerretServer(await freePort(), tempDir("ferretdb"), ferretBinary()).start();
}

/** True when FerretDB's postgresql backend can run here (PostgreSQL's server binaries installed). */
export function postgresAvailable(): boolean {
  try {
    postgresBinaries();
    return true;
  } catch {
    return false;
  }
}

/**
 * FerretDB with the postgresql handler pushes `_id` down even when a filter has more conditions, so a
 * conditional update costs an index look-up instead of a collection scan (SQLite's handler): the
 * server for runs with thousands of orders (TEST_FERRETDB_BACKEND=postgresql).
 */
async function startFerretOnPostgres(): Promise<TestServer> {
  const bin = postgresBinaries();
  const postgresDir = tempDir("postgres");
  const postgres = new PostgresServer(await freePort(), postgresDir, bin);
  const ferret = new FerretServer(await freePort(), tempDir("ferretdb"), ferretBinary(), [
    "--handler=postgresql",
    `--postgresql-url=${postgres.url}`,
  ]);
  return new FerretOnPostgres(postgres, ferret).start();
}

function postgresBinaries(): string {
  const versions = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql") : [];
  const candidates = [
    process.env.POSTGRES_BIN,
    ...versions.sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin`),
  ];
  const bin = candidates.find((c) => c !== undefined && existsSync(join(c, "postgres")));
  if (!bin) {
    throw new Error(
      "TEST_FERRETDB_BACKEND=postgresql needs PostgreSQL's server binaries (Debian: postgresql)",
    );
  }
  return bin;
}

/** A MongoDB URL for `database` on `server`, with query options kept. */
export function mongoUrlFor(server: TestServer, database: string): string {
  const url = parseMongoUrl(server.url, { requireDatabase: false });
  return `mongodb://${url.hosts.join(",")}/${database}${url.search}`;
}

export function ferretBinary(): string {
  const binary = process.env.FERRETDB_BIN ?? join(homedir(), ".cache/orders-service/bin/ferretdb");
  if (!existsSync(binary)) {
    throw new Error(`no mongod on PATH and no FerretDB at ${binary}: run scripts/install-ferretdb.sh`);
  }
  return binary;
}

function tempDir(kind: string): string {
  return mkdtempSync(join(tmpdir(), `orders-test-${kind}-`));
}

/** Connects to a TCP port and, if `send` is given, expects `expect` in the first reply. */
function respondsTo(port: number, send: string | null, expect: string | null): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => {
      if (send === null) return done(true);
      socket.write(send);
    });
    socket.once("data", (data) => done(expect === null || data.toString().includes(expect)));
  });
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
