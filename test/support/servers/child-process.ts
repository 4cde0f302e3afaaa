/**
 * A child process the harness owns. A watchdog (a detached shell) kills it and deletes its data
 * directory when the test process dies, even by SIGKILL, so an interrupted run leaves nothing behind.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import type { Subprocess } from "bun";

const live = new Set<OwnedProcess>();
/** The watchdog that guards each data directory: the one of its newest process. */
const directoryGuards = new Map<string, Subprocess>();

/**
 * $1 test process, $2 child (empty: none yet, guardDirectory), $3 data directory (may be empty).
 * While the test process lives it waits; a dead child ends the watch only once its directory is gone
 * too (a server killed by a fault keeps its directory until the restart, and the test process may die
 * in between). When the test process dies: SIGKILL for the child if it still ran at the last look,
 * and the directory is deleted, again while something still writes into it (the killed child's own
 * children, e.g. PostgreSQL's backends or initdb's bootstrap process, may until they notice).
 */
const WATCHDOG = `
child_alive=1
while kill -0 "$1" 2>/dev/null; do
  if ! kill -0 "$2" 2>/dev/null; then
    child_alive=0
    if [ -z "$3" ] || [ ! -e "$3" ]; then exit 0; fi
  fi
  sleep 1
done
if [ "$child_alive" = 1 ]; then kill -9 "$2" 2>/dev/null; fi
if [ -n "$3" ]; then
  for _ in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$3" 2>/dev/null; [ -e "$3" ] || break; sleep 0.5; done
fi
`;

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
      // With a directory, the watchdog stays until the directory is gone or a newer process took over.
      if (!cleanupDir) this.watchdog?.kill(9);
      return proc.signalCode ? 128 + signalNumber(String(proc.signalCode)) : code;
    });
    void this.collect(proc.stdout);
    void this.collect(proc.stderr);
    this.watchdog = Bun.spawn(
      ["bash", "-c", WATCHDOG, "watchdog", String(process.pid), String(proc.pid), cleanupDir ?? ""],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    this.watchdog.unref();
    if (cleanupDir) {
      directoryGuards.get(cleanupDir)?.kill(9);
      directoryGuards.set(cleanupDir, this.watchdog);
    }
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

  /**
   * SIGSTOP, then waits (at most `timeoutMs`) until every thread shows as stopped in /proc: kill()
   * returns before the threads have stopped, and a request sent at once was seen answered.
   */
  pause(timeoutMs = 1_000): void {
    this.signal("SIGSTOP");
    const deadline = performance.now() + timeoutMs;
    while (!this.allThreadsStopped() && performance.now() < deadline) Bun.sleepSync(1);
  }

  private allThreadsStopped(): boolean {
    try {
      return readdirSync(`/proc/${this.pid}/task`).every((thread) => {
        const stat = readFileSync(`/proc/${this.pid}/task/${thread}/stat`, "utf8");
        // "tid (comm) S ...": the state follows the last ")" (comm may hold one).
        const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
        return state === "T" || state === "t";
      });
    } catch {
      return true; // gone, or no /proc: nothing more to wait for
    }
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

/**
 * Guards a directory that no process owns yet (a server's, between its creation and the server's
 * start): deleted if the test process dies first. The watchdog of the first process spawned with it
 * as `cleanupDir` takes over; a directory deleted meanwhile ends the watch.
 */
export function guardDirectory(dir: string): void {
  const watchdog = Bun.spawn(["bash", "-c", WATCHDOG, "watchdog", String(process.pid), "", dir], {
    stdio: ["ignore", "ignore", "ignore"],
  });
  watchdog.unref();
  directoryGuards.get(dir)?.kill(9);
  directoryGuards.set(dir, watchdog);
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
