/**
 * freePort() across processes: `bun run test` runs files in parallel worker processes, each asking the
 * kernel for free ports; a port stays unbound between freePort() and the server's start, so two
 * processes must never be handed the same one (test/support/wait-for.ts claims each port in a file).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { claimPort, freePort, PORT_CLAIMS, removeStaleClaims } from "../support/wait-for.ts";

const WAIT_FOR = join(import.meta.dir, "../support/wait-for.ts");

describe("freePort", () => {
  test("claims the port it hands out, for this process", async () => {
    const port = await freePort();
    expect(readFileSync(join(PORT_CLAIMS, String(port)), "utf8")).toBe(String(process.pid));
  });

  test("a port a running process claimed is not claimed again; one of a dead process, or too old, is freed", async () => {
    const port = await freePort();
    const file = join(PORT_CLAIMS, String(port));
    const other = Bun.spawn(["sleep", "30"]);
    try {
      writeFileSync(file, String(other.pid));
      expect(claimPort(port)).toBe(false);
      removeStaleClaims();
      expect(claimPort(port)).toBe(false);
      const longAgo = new Date(Date.now() - 31 * 60_000);
      utimesSync(file, longAgo, longAgo);
      removeStaleClaims();
      expect(claimPort(port)).toBe(true);
      expect(readFileSync(file, "utf8")).toBe(String(process.pid));

      writeFileSync(file, String(other.pid));
      other.kill(9);
      await other.exited;
      expect(claimPort(port)).toBe(false);
      removeStaleClaims();
      expect(claimPort(port)).toBe(true);
      expect(readFileSync(file, "utf8")).toBe(String(process.pid));
    } finally {
      other.kill(9);
      rmSync(file, { force: true });
    }
  });

  test("two processes asking at the same time are handed disjoint ports", async () => {
    // 400 ports each, drawn from about 22,800: without the claims about 7 would be in both lists (and
    // 13-30 were, in three trials of the kernel's own choice).
    const script = `import { freePort } from ${JSON.stringify(WAIT_FOR)};
      const ports = [];
      for (let i = 0; i < 400; i++) ports.push(await freePort());
      console.log(JSON.stringify(ports));`;
    const run = () => Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "inherit" }).stdout.text();
    const [a = [], b = []] = (await Promise.all([run(), run()])).map((out) => JSON.parse(out) as number[]);
    expect(a).toHaveLength(400);
    expect(b).toHaveLength(400);
    expect(a.filter((port) => b.includes(port))).toEqual([]);
  });
});
