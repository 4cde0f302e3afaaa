/**
 * The whole system from its real processes, for the chaos checker and the benchmarks: the harness's
 * redis-server and MongoDB-wire server, one `exchange` (venue) process, one `api` process and K `actors`
 * processes, each `bun src/main.ts <kind>` on a port fixed for its slot, so that a restarted process
 * comes back where its clients expect it. Every process can be killed (-9), paused (SIGSTOP), resumed
 * and started again; logs of every incarnation are kept for the report.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { OwnedProcess } from "../../test/harness/child-process.ts";
import { freePort } from "../../test/harness/wait-for.ts";
import { isolatedEnv, type Servers, spawnService, startServers } from "../../test/support/system.ts";

export type ServiceKind = "api" | "actors" | "exchange";

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
}

export class Cluster {
  private constructor(
    readonly servers: Servers,
    readonly env: Record<string, string>,
    readonly venue: Service,
    readonly api: Service,
    readonly actors: Service[],
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
      const cluster = new Cluster(servers, env, venue, api, actors);
      try {
        await venue.start();
        // The api first: it creates the indexes; actor processes then start side by side.
        await api.start();
        await Promise.all(actors.map((actor) => actor.start()));
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
    return [this.venue, this.api, ...this.actors];
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

/** The sum of every sample of `name` in a process's /metrics whose labels include `labels`. */
export async function metricSum(
  service: Service,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | null> {
  const response = await fetch(`${service.opsUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await response.text();
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    const match = line.match(/^([A-Za-z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      sum = (sum ?? 0) + Number(match[4]);
    }
  }
  return sum;
}
