import {
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

/** Polls `condition` until it returns a truthy value; never a bare sleep in a test. */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 50, message = "condition" } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const suffix = lastError ? ` (last error: ${(lastError as Error).message})` : "";
      throw new Error(`waitFor timed out after ${timeoutMs} ms: ${message}${suffix}`);
    }
    await Bun.sleep(intervalMs);
  }
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

const handedOut = new Set<number>();

/**
 * Ports handed out by any test or benchmark process on this machine, one file per port holding its
 * owner's pid. `bun run test` runs files in parallel worker processes, and a port stays free between
 * freePort() and the server's bind (and while a fault test restarts a server on its port): without a
 * claim another process could be handed the same port meanwhile. A claim lasts as long as its owner
 * (a server the owner started dies with it); one older than the longest run (the 10,000-order chaos
 * run, about 16 minutes) is stale too, in case a pid was reused.
 */
// Not under TMPDIR: processes with TMPDIRs of their own (harness.test.ts gives one to a child it kills)
// share the machine's ports all the same. One directory per user, each writable by its owner.
export const PORT_CLAIMS = `/tmp/orders-test-ports-${process.getuid?.() ?? "user"}`;
const PORT_CLAIM_TTL_MS = 30 * 60_000;
/**
 * Candidates are drawn at random from below Linux's ephemeral range (32768-60999): the kernel's own
 * choice (bind to port 0) keeps offering the few ports it freed last, claimed ones after a run or two,
 * and an outgoing connection may take an ephemeral port before the server binds it.
 */
const PORT_RANGE = { first: 10_000, last: 32_767 };
let staleClaimsRemoved = false;

/** Claims `port` for this process: false when another process (or this one) holds it. */
export function claimPort(port: number): boolean {
  if (!staleClaimsRemoved) {
    staleClaimsRemoved = true;
    removeStaleClaims();
  }
  // Created with its content in one step (a link to a finished draft): a claim is never seen empty,
  // which another process would take for one whose owner is gone.
  const file = join(PORT_CLAIMS, String(port));
  const draft = `${file}.${process.pid}.draft`;
  writeFileSync(draft, String(process.pid));
  try {
    linkSync(draft, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return false;
  } finally {
    rmSync(draft, { force: true });
  }
}

/**
 * Frees the claims of processes that have ended (or older than the TTL). A claim is moved aside before
 * it is deleted, and put back if it turns out to be live: another process freeing the same stale
 * claim at the same moment, and a third claiming the port again in between, cannot lose that claim.
 */
export function removeStaleClaims(): void {
  mkdirSync(PORT_CLAIMS, { recursive: true });
  for (const name of readdirSync(PORT_CLAIMS)) {
    const file = join(PORT_CLAIMS, name);
    if (name.includes(".")) {
      // A draft or a claim moved aside by a process that died meanwhile.
      if (ageMs(file) > 60_000) rmSync(file, { force: true });
      continue;
    }
    if (!isStale(file)) continue;
    const aside = `${file}.${process.pid}.stale`;
    try {
      renameSync(file, aside);
    } catch {
      continue; // freed by another process already
    }
    try {
      if (!isStale(aside)) linkSync(aside, file);
    } catch {
      // Claimed again in between: the port has an owner either way.
    }
    rmSync(aside, { force: true });
  }
}

function isStale(file: string): boolean {
  let owner: number;
  try {
    owner = Number(readFileSync(file, "utf8"));
  } catch {
    return false; // removed meanwhile by another process: not ours to free
  }
  return ageMs(file) > PORT_CLAIM_TTL_MS || !isRunning(owner);
}

function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when nothing listens on the port on loopback now. */
function isFree(port: number): boolean {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  // A process that asks for two ports at once (a service's PORT and OPS_PORT) must get two: ports given
  // out by this process, or claimed by another one (claimPort), are not given again.
  const span = PORT_RANGE.last - PORT_RANGE.first + 1;
  for (let attempt = 0; attempt < 500; attempt++) {
    const port = PORT_RANGE.first + Math.floor(Math.random() * span);
    if (handedOut.has(port) || !isFree(port) || !claimPort(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${PORT_RANGE.first}-${PORT_RANGE.last} that no test process has claimed`);
}
