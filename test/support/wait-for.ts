import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
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
 * Ports handed out by any test or benchmark process on this machine, one file per port. `bun run test`
 * runs files in parallel worker processes, and a port stays free between freePort() and the server's
 * bind (and while a fault test restarts a server on its port): without a claim another process could
 * be handed the same port meanwhile. A claim outlives the longest run that holds a port (the 10,000-order
 * chaos run, about 16 minutes); an older one is stale and taken over.
 */
// Not under TMPDIR: processes with TMPDIRs of their own (harness.test.ts gives one to a child it kills)
// share the machine's ports all the same. One directory per user, each writable by its owner.
export const PORT_CLAIMS = `/tmp/orders-test-ports-${process.getuid?.() ?? "user"}`;
const PORT_CLAIM_TTL_MS = 30 * 60_000;
let staleClaimsRemoved = false;

export function claimPort(port: number): boolean {
  if (!staleClaimsRemoved) {
    staleClaimsRemoved = true;
    mkdirSync(PORT_CLAIMS, { recursive: true });
    for (const name of readdirSync(PORT_CLAIMS)) {
      if (claimAgeMs(join(PORT_CLAIMS, name)) > PORT_CLAIM_TTL_MS)
        rmSync(join(PORT_CLAIMS, name), { force: true });
    }
  }
  const file = join(PORT_CLAIMS, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  if (claimAgeMs(file) <= PORT_CLAIM_TTL_MS) return false;
  writeFileSync(file, String(process.pid));
  return true;
}

function claimAgeMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0; // removed meanwhile by another process: not ours to take
  }
}

export async function freePort(): Promise<number> {
  // The kernel may hand the same ephemeral port out twice in a row once it is released; a process that
  // asks for two ports at once (a service's PORT and OPS_PORT) must get two. Ports given out by this
  // process, or claimed by another one (claimPort), are not given again.
  for (let attempt = 0; attempt < 200; attempt++) {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = server.port;
    server.stop(true);
    if (handedOut.has(port) || !claimPort(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("no free port that no test process has handed out already");
}
