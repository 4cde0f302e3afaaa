/**
 * What every server of the harness shares: the TestServer interface the tests use, and OwnedServer,
 * a server process the harness starts itself (spawnOwned: a watchdog kills it and deletes its data
 * directory if the test process dies) on a free loopback port with a fresh temporary directory. It
 * can be killed (-9), restarted on the same port and data, paused (SIGSTOP) and resumed, and is
 * stopped with its directory deleted.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../wait-for.ts";
import { guardDirectory, type OwnedProcess, spawnOwned } from "./child-process.ts";

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

export abstract class OwnedServer implements TestServer {
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
  /** The server's environment (default: this process's). */
  protected env(): Record<string, string | undefined> {
    return process.env;
  }

  async start(): Promise<this> {
    this.process = spawnOwned(this.kind, this.command(), { env: this.env(), cleanupDir: this.dir });
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
    this.process?.pause();
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

/** A fresh temporary directory, deleted if the test process dies before a server owns it. */
export function tempDir(kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `orders-test-${kind}-`));
  guardDirectory(dir);
  return dir;
}

/** Connects to a TCP port and, if `send` is given, expects `expect` in the first reply. */
export function respondsTo(port: number, send: string | null, expect: string | null): Promise<boolean> {
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
