/**
 * Dependencies point inward: the domain imports no driver, no adapter, no framework; src/ does not
 * import actors/; the tests take their helpers from test/support/ only.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const DRIVERS = ["mongodb", "ioredis", "opossum", "prom-client", "elysia", "@elysiajs/swagger"];

function importsOf(file: string): string[] {
  const source = readFileSync(file, "utf8");
  return [...source.matchAll(/^\s*import[^"']*["']([^"']+)["']/gm)].map((m) => m[1]!);
}

function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(ROOT, dir, f));
}

describe("dependency direction", () => {
  test("src/domain imports no driver and nothing outside the domain", () => {
    const files = filesUnder("src/domain");
    expect(files.length).toBeGreaterThan(3);
    for (const file of files) {
      for (const spec of importsOf(file)) {
        expect({ file, spec, driver: DRIVERS.includes(spec) }).toEqual({ file, spec, driver: false });
        const leavesDomain = spec.startsWith(".") && !spec.startsWith("./");
        expect({ file, spec, leavesDomain }).toEqual({ file, spec, leavesDomain: false });
      }
    }
  });

  test("the actor runtime knows nothing about orders (it may use src/support's generic helpers)", () => {
    for (const file of filesUnder("actors/runtime")) {
      for (const spec of importsOf(file)) {
        const ok = (!spec.includes("src/") || spec.includes("src/support/")) && !spec.includes("placement");
        expect({ file, spec, ok }).toEqual({ file, spec, ok: true });
      }
    }
  });

  test("arrows point one way: src/ imports nothing from actors/, except the entry point", () => {
    const files = filesUnder("src").filter((file) => !file.endsWith("src/main.ts"));
    expect(files.length).toBeGreaterThan(20);
    for (const file of files) {
      for (const spec of importsOf(file))
        expect({ file, spec, intoActors: spec.includes("actors/") }).toEqual({
          file,
          spec,
          intoActors: false,
        });
    }
  });

  test("test helpers have one home: nothing in test/ imports from test/ outside test/support/", () => {
    const files = filesUnder("test");
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      const folder = file.slice(join(ROOT, "test").length + 1).split("/")[0];
      for (const spec of importsOf(file)) {
        // Relative imports of real files (a test may hold generated code that imports its own files).
        if (!spec.startsWith(".") || !existsSync(join(file, "..", spec))) continue;
        const target = join(file, "..", spec).slice(ROOT.length + 1);
        const ok = !target.startsWith("test/") || target.startsWith("test/support/") || folder === "support";
        expect({ file, spec, ok }).toEqual({ file, spec, ok: true });
      }
    }
  });
});
