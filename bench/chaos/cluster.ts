/**
 * The whole system from its real processes, for the chaos checker and the benchmarks: the harness's
 * redis-server and MongoDB-wire server, one `exchange` (venue) process, one `api` process, K `actors`
 * processes and, with `executionPath`, two `gateway` processes (one active, one standby) and one
 * `executions` process; each `bun src/main.ts <kind>` on a port fixed for its slot, so that a restarted
 * process comes back where its clients expect it. Every process can be killed (-9), paused (SIGSTOP),
 * resumed and started again; logs of every incarnation are kept for the report.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { OwnedProcess } from "../../test/support/servers/child-process.ts";
import { isolatedEnv, type Servers, spawnService, startServers } from "../../test/support/system.ts";
import { freePort } from "../../test/support/wait-for.ts";

export type ServiceKind = "api" | "actors" | "exchange" | "gateway" | "executions";

/** One slot: a process kind on a fixed port, started again after each fault. */
export class Service {
  private current: OwnedProcess | undefined;
  private readonly history: { started: number; logs: () => string }[] = [];
  restarts = 0;

  constructor(
    readonly name: string,
    readonly kind: ServiceKind,
    readonly port: number,
    readonly opsPort: number,
    private readonly env: () => Record<string, string>,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** /health/*, /metrics. */
  get opsUrl(): string {
    return `http://127.0.0.1:${this.opsPort}`;
  }

  get pid(): number | undefined {
    return this.current?.pid;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  /** Starts the process and waits until GET /health/live answers 200 (the process listens last). */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.current) throw new Error(`${this.name} is already running`);
    const started = Date.now();
    const { process: owned } = await spawnService(this.kind, this.env(), {
      port: this.port,
      opsPort: this.opsPort,
      name: this.name,
      timeoutMs,
    });
    this.current = owned;
    this.history.push({ started, logs: () => owned.logs });
  }

  /** kill -9 and wait until it is gone. */
  async kill(): Promise<void> {
    const owned = this.current;
    this.current = undefined;
    if (!owned) return;
    owned.signal("SIGCONT");
    await owned.kill();
  }

  async restart(): Promise<void> {
    await this.kill();
    this.restarts += 1;
    await this.start();
  }

  signal(signal: NodeJS.Signals): void {
    this.current?.signal(signal);
  }

  /** Every incarnation's output, oldest first. */
  logs(): string {
    return this.history
      .map(
        (h, i) =>
          `===== ${this.name} incarnation ${i + 1} (started ${new Date(h.started).toISOString()})\n${h.logs()}`,
      )
      .join("\n");
  }
}

export interface ClusterOptions {
  actors: number;
  /** Environment for every service process (timeouts, intervals). */
  env: Record<string, string>;
  venue: { failureRate: number; latencyMs: number };
  /** Start the api and actors processes (default true). */
  withApi?: boolean;
  /**
   * Also read the venue's execution reports: two gateways and one executions process (default false,
   * so that benchmarks of the placement path keep their numbers).
   */
  executionPath?: boolean;
}

export class Cluster {
  private constructor(
    readonly servers: Servers,
    readonly env: Record<string, string>,
    readonly venue: Service,
    readonly api: Service,
    readonly actors: Service[],
    readonly gateways: Service[],
    readonly executions: Service | null,
  ) {}

  static async start(options: ClusterOptions): Promise<Cluster> {
    const servers = await startServers();
    try {
      const base = isolatedEnv(servers, options.env);
      const venuePort = await freePort();
      const venue = new Service("exchange", "exchange", venuePort, await freePort(), () => ({
        ...base,
        EXCHANGE_FAILURE_RATE: String(options.venue.failureRate),
        EXCHANGE_LATENCY_MS: String(options.venue.latencyMs),
      }));
      const env = { ...base, EXCHANGE_URL: venue.baseUrl };
      const api = new Service("api", "api", await freePort(), await freePort(), () => env);
      const actors: Service[] = [];
      for (let i = 0; i < options.actors; i++) {
        actors.push(new Service(`actors-${i + 1}`, "actors", await freePort(), await freePort(), () => env));
      }
      const slot = async (name: string, kind: ServiceKind) =>
        new Service(name, kind, await freePort(), await freePort(), () => env);
      const gateways = options.executionPath
        ? [await slot("gateway-1", "gateway"), await slot("gateway-2", "gateway")]
        : [];
      const executions = options.executionPath ? await slot("executions", "executions") : null;
      const cluster = new Cluster(servers, env, venue, api, actors, gateways, executions);
      try {
        await venue.start();
        // The api first: it creates the indexes; the other processes then start side by side.
        await api.start();
        await Promise.all(
          [...actors, ...(executions ? [executions] : []), ...gateways].map((service) => service.start()),
        );
      } catch (error) {
        await cluster.stop();
        throw error;
      }
      return cluster;
    } catch (error) {
      await servers.stop();
      throw error;
    }
  }

  get services(): Service[] {
    return [
      this.venue,
      this.api,
      ...this.actors,
      ...(this.executions ? [this.executions] : []),
      ...this.gateways,
    ];
  }

  /** Kills every process and stops the servers (deleting their data). Never throws. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.services.map((service) => service.kill()));
    await this.servers.stop();
  }

  /** Writes every process's output to `dir`, one file per slot. */
  writeLogs(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const service of this.services) writeFileSync(join(dir, `${service.name}.log`), service.logs());
  }
}

export { configureVenue, type VenueStats, venueStats } from "../../test/support/venue-admin.ts";
export { metricSum } from "./metrics.ts";
