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

export async function freePort(): Promise<number> {
  // The kernel may hand the same ephemeral port out twice in a row once it is released; a process that
  // asks for two ports at once (a service's PORT and OPS_PORT) must get two. Ports given out by this
  // process are not given again.
  for (let attempt = 0; attempt < 50; attempt++) {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = server.port;
    server.stop(true);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("no free port that this process has not handed out already");
}
