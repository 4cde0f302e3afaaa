/**
 * A child process the harness owns. A watchdog (a detached shell) kills it and deletes its data
 * directory when the test process dies, even by SIGKILL, so an interrupted run leaves nothing behind.
 */
import { rmSync } from "node:fs";
import type { Subprocess } from "bun";

const live = new Set<OwnedProcess>();

export class OwnedProcess {
  private output = "";
  private readonly exitedPromise: Promise<number>;
  private watchdog: Subprocess | undefined;

  constructor(
    readonly name: string,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
    private readonly cleanupDir?: string,
  ) {
    live.add(this);
    this.exitedPromise = proc.exited.then((code) => {
      live.delete(this);
      this.watchdog?.kill(9);
      return proc.signalCode ? 128 + signalNumber(String(proc.signalCode)) : code;
    });
    void this.collect(proc.stdout);
    void this.collect(proc.stderr);
    const dirArg = cleanupDir ?? "";
    this.watchdog = Bun.spawn(
      [
        "bash",
        "-c",
        'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -0 "$1" 2>/dev/null || { kill -9 "$2" 2>/dev/null; [ -n "$3" ] && rm -rf "$3"; }',
        "watchdog",
        String(process.pid),
        String(proc.pid),
        dirArg,
      ],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    this.watchdog.unref();
  }

  get pid(): number {
    return this.proc.pid;
  }

  get exited(): Promise<number> {
    return this.exitedPromise;
  }

  /** Everything the process wrote to stdout and stderr so far. */
  get logs(): string {
    return this.output;
  }

  signal(signal: NodeJS.Signals): void {
    try {
      process.kill(this.proc.pid, signal);
    } catch {
      // already gone
    }
  }

  async kill(): Promise<number> {
    this.signal("SIGKILL");
    return this.exited;
  }

  /** Waits until the output matches `pattern`; rejects if the process exits first. */
  async waitForOutput(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    for (;;) {
      const match = this.output.match(pattern);
      if (match) return match;
      if (exited)
        throw new Error(`${this.name} exited before printing ${pattern}:\n${this.output.slice(-4000)}`);
      if (Date.now() > deadline)
        throw new Error(
          `${this.name} did not print ${pattern} in ${timeoutMs} ms:\n${this.output.slice(-4000)}`,
        );
      await Bun.sleep(25);
    }
  }

  private async collect(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.output += decoder.decode(chunk, { stream: true });
      if (this.output.length > 2_000_000) this.output = this.output.slice(-1_000_000);
    }
  }

  removeDir() {
    if (this.cleanupDir) rmSync(this.cleanupDir, { recursive: true, force: true });
  }
}

export function spawnOwned(
  name: string,
  cmd: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; cleanupDir?: string } = {},
): OwnedProcess {
  const proc = Bun.spawn(cmd, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new OwnedProcess(name, proc, options.cleanupDir);
}

function signalNumber(signal: string): number {
  return (
    ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 } as Record<string, number>)[signal] ?? 0
  );
}

function killAllSync() {
  for (const owned of live) {
    try {
      process.kill(owned.pid, "SIGKILL");
    } catch {}
    owned.removeDir();
  }
}
process.on("exit", killAllSync);
