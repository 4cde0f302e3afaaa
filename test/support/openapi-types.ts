/**
 * TypeScript types of an OpenAPI document, made by openapi-typescript, as a process of its own:
 *
 *   bun test/support/openapi-types.ts <document.json> <out.ts>
 *
 * openapi-typescript 7 builds its output with the JavaScript API of the `typescript` package
 * (`ts.factory`), which this repository's TypeScript 7 (the native compiler, no JavaScript API) does not
 * have. This process hands openapi-typescript a TypeScript that has it in place of the top-level one:
 * the 6.x that ts-json-schema-generator depends on. A Bun plugin does the swap, and it would apply to
 * every later import of `typescript` in its process: hence a process of its own, not the test runner.
 * (A dev dependency pinning a TypeScript 5 for openapi-typescript would make this swap unnecessary.)
 */
import { createRequire } from "node:module";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

/** A `typescript` with the JavaScript API, or an error that says what is missing. */
function typescriptWithApi(): string {
  const path = createRequire(resolve(ROOT, "node_modules/ts-json-schema-generator/package.json")).resolve(
    "typescript",
  );
  const api = require(path) as { factory?: unknown; version?: string };
  if (typeof api.factory !== "object") {
    throw new Error(`${path} (TypeScript ${api.version}) has no ts.factory: openapi-typescript needs one`);
  }
  return path;
}

export async function generateTypes(document: unknown): Promise<string> {
  const withApi = typescriptWithApi();
  Bun.plugin({
    name: "typescript with its JavaScript API, for openapi-typescript",
    setup(build) {
      // The entry of TypeScript 7's package (lib/version.cjs), the one openapi-typescript would load.
      build.onLoad({ filter: /node_modules\/typescript\/lib\/version\.cjs$/ }, () => ({
        contents: `import ts from ${JSON.stringify(withApi)}; export default ts;`,
        loader: "js",
      }));
    },
  });
  const { default: openapiTS, astToString } = await import("openapi-typescript");
  return astToString(await openapiTS(document as Parameters<typeof openapiTS>[0]));
}

if (import.meta.main) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error("usage: bun test/support/openapi-types.ts <document.json> <out.ts>");
    process.exit(2);
  }
  await Bun.write(output, await generateTypes(await Bun.file(input).json()));
}
