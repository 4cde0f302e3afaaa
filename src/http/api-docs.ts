/**
 * The API reference page (/swagger) and its OpenAPI document (/swagger/json), served without the internet:
 * the Scalar browser bundle is embedded in the compiled binary and served from /swagger/assets.
 */
import { type ElysiaSwaggerConfig, swagger } from "@elysiajs/swagger";
import { Elysia } from "elysia";
// Bun embeds the file in `bun build --compile` and hands back its path ($bunfs in the binary). The path
// goes through node_modules because the package's `exports` does not list dist/browser nor package.json.
// @ts-expect-error TS7016: an untyped JS file; with `type: "file"` the default export is its path (a string).
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with {
  type: "file",
};
import scalarPackage from "../../node_modules/@scalar/api-reference/package.json" with { type: "json" };

/** The OpenAPI document's own fields (info, tags, components, security, ...); the paths come from the routes. */
export type ApiDocumentation = NonNullable<ElysiaSwaggerConfig["documentation"]>;

export interface ApiDocsOptions {
  /** false: no docs routes at all, so /swagger and /swagger/json answer 404. */
  enabled: boolean;
  /** Merged over `openapi: "3.1.0"`; `info.title` is also the page title. */
  documentation: ApiDocumentation;
}

const DOCS_PATH = "/swagger";
const SPEC_PATH = "/swagger/json";
/** Versioned name: a new pin is a new URL, so the bundle can be cached for good. */
export const SCALAR_BUNDLE_PATH = `/swagger/assets/scalar-api-reference-${scalarPackage.version}.js`;
const SCALAR_BUNDLE: string = scalarBundle;

/**
 * Scalar settings that keep the page from calling anything but this server (test/e2e/docs-page.test.ts
 * aborts and fails on any other host): no font CDN (without this, fonts.scalar.com); no developer toolbar
 * (Scalar's hosted Share, Deploy, SDK and MCP services); no Agent Scalar (on by default on localhost, it
 * talks to Scalar's API); and an empty proxy URL, so the API client sends requests straight to the server
 * rather than through proxy.scalar.com (1.76.0's in-page client already does; this keeps it so if the
 * default changes). Keys newer than the plugin's `ReferenceConfiguration` type (@scalar/types 0.0.12)
 * reach the page all the same: the plugin writes the whole object into the page as JSON.
 */
const OFFLINE_SCALAR_CONFIG = {
  withDefaultFonts: false,
  showDeveloperTools: "never",
  agent: { disabled: true },
  mcp: { disabled: true },
  proxyUrl: "",
};

export function apiDocs(options: ApiDocsOptions) {
  const plugin = new Elysia({ name: "api-docs" });
  if (!options.enabled) return plugin;
  const scalarConfig: NonNullable<ElysiaSwaggerConfig["scalarConfig"]> = OFFLINE_SCALAR_CONFIG;
  return plugin
    .get(
      SCALAR_BUNDLE_PATH,
      () =>
        new Response(Bun.file(SCALAR_BUNDLE), {
          headers: {
            "content-type": "text/javascript; charset=utf-8",
            "cache-control": "public, max-age=31536000, immutable",
          },
        }),
      { detail: { hide: true } },
    )
    .use(
      swagger({
        path: DOCS_PATH,
        specPath: SPEC_PATH,
        scalarCDN: SCALAR_BUNDLE_PATH,
        exclude: [DOCS_PATH, SPEC_PATH, SCALAR_BUNDLE_PATH],
        documentation: { openapi: "3.1.0", ...options.documentation },
        scalarConfig,
      }),
    );
}
