/**
 * The API reference page (/swagger) in a real headless Chromium: it renders from the service alone (no
 * request may leave 127.0.0.1: no CDN, no font host, no Scalar service), and its API client places an
 * order with an API key, on the real API (in process, on real Redis and MongoDB-wire servers). The
 * plugin's own behaviour (bundle route, disabled) is checked over HTTP on a small app that mounts it.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { Type as T } from "@sinclair/typebox";
import { Elysia } from "elysia";
import { chromium, type Page } from "playwright-core";
import { type ApiDocumentation, apiDocs, SCALAR_BUNDLE_PATH } from "../../src/http/api-docs.ts";
import { bearer, createApiKey, getPath, isolatedEnv, startInProcess, useServers } from "../support/system.ts";

// Launching Chromium and loading a 5 MB bundle takes longer than bun's 5 s default.
setDefaultTimeout(60_000);

const CHROMIUM = "/usr/bin/chromium";
const NO_CHROMIUM = !existsSync(CHROMIUM);
if (NO_CHROMIUM) {
  console.warn(`test/e2e/docs-page.test.ts: browser tests skipped: no ${CHROMIUM} (Debian's chromium)`);
}

const TITLE = "Order placement API";
const DOCUMENTATION: ApiDocumentation = {
  info: { title: TITLE, version: "1.0.0", description: "Place stock orders." },
  components: { securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } } },
  security: [{ bearerAuth: [] }],
};

interface DocsServer {
  baseUrl: string;
  stop(): Promise<void>;
}

const servers = useServers();

/** The real API on 127.0.0.1 and a key of its account `docs-reader`. */
async function startService() {
  const env = isolatedEnv(servers);
  const running = await startInProcess(env, "api");
  return {
    baseUrl: `http://127.0.0.1:${running.port}`,
    token: await createApiKey(env, "docs-reader"),
    running,
    stop: () => running.close(),
  };
}

/** A small app that mounts the plugin alone: what it serves, and what it does when disabled. */
async function startDocsServer(documentation: ApiDocumentation, enabled = true): Promise<DocsServer> {
  const app = new Elysia()
    .use(apiDocs({ enabled, documentation }))
    .post(
      "/orders",
      ({ set }) => {
        set.status = 201;
        return { id: "order-1" };
      },
      {
        body: T.Object(
          {
            instrument: T.String({ minLength: 12, maxLength: 12, examples: ["US0378331005"] }),
            quantity: T.Integer({ minimum: 1 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: T.Object({ id: T.String() }) },
        detail: { summary: "Place an order", tags: ["orders"] },
      },
    )
    .listen({ hostname: "127.0.0.1", port: 0 });
  return {
    baseUrl: `http://127.0.0.1:${app.server!.port}`,
    async stop() {
      await app.stop(true);
    },
  };
}

interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | null;
}

interface DocsPage {
  page: Page;
  /** Every request the page made, local or not. */
  requests: SeenRequest[];
  /** Requests to any host but 127.0.0.1: aborted, and the test fails if there is one. */
  outside: string[];
  /** Console errors and uncaught exceptions (a failed load shows up here). */
  errors: string[];
}

/** Opens /swagger in a fresh headless Chromium, runs `use`, and closes the browser even on failure. */
async function withDocsPage(baseUrl: string, use: (docs: DocsPage) => Promise<void>): Promise<void> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const docs: DocsPage = { page, requests: [], outside: [], errors: [] };
    page.on("console", (message) => {
      if (message.type() === "error") docs.errors.push(message.text());
    });
    page.on("pageerror", (error) => docs.errors.push(error.message));
    await page.route("**/*", async (route) => {
      const request = route.request();
      docs.requests.push({
        method: request.method(),
        url: request.url(),
        headers: request.headers(),
        body: request.postData(),
      });
      if (new URL(request.url()).hostname === "127.0.0.1") return route.continue();
      docs.outside.push(`${request.method()} ${request.url()}`);
      return route.abort("blockedbyclient");
    });
    const response = await page.goto(`${baseUrl}/swagger`);
    expect(response?.status()).toBe(200);
    await use(docs);
  } finally {
    await browser.close();
  }
}

describe("the API reference page in Chromium", () => {
  test.skipIf(NO_CHROMIUM)(
    "renders POST /orders from the service alone, titled from the document",
    async () => {
      const server = await startService();
      try {
        await withDocsPage(server.baseUrl, async ({ page, requests, outside, errors }) => {
          // The request example's heading: the method (upper-cased by CSS) and the path, both visible.
          const path = page.getByText("/orders", { exact: true }).first();
          await path.waitFor({ state: "visible" });
          // biome-ignore lint/performance/useDomNodeTextContent: Playwright's rendered text, as a reader sees it (CSS upper-cases the method; textContent has "post").
          expect(await path.locator("xpath=..").innerText()).toMatch(/\bPOST\s*\/orders\b/);
          await page.getByText("Place an order").first().waitFor({ state: "visible" });
          await page.waitForLoadState("networkidle");

          expect(await page.title()).toBe(TITLE);
          expect(outside).toEqual([]);
          expect(errors).toEqual([]);
          const loaded = requests.map((request) => new URL(request.url).pathname);
          expect(loaded).toContain(SCALAR_BUNDLE_PATH);
          expect(loaded).toContain("/swagger/json");
        });
      } finally {
        await server.stop();
      }
    },
  );

  test.skipIf(NO_CHROMIUM)("its API client places an order with the API key set in its auth UI", async () => {
    const server = await startService();
    const token = server.token;
    const order = { type: "market", side: "buy", instrument: "US0378331005", quantity: 3 };
    try {
      await withDocsPage(server.baseUrl, async ({ page, requests, outside, errors }) => {
        // The Test Request button of the "Place an order" operation (the document has several).
        await page
          .locator("section")
          .filter({ has: page.getByRole("heading", { name: "Place an order" }) })
          .getByRole("button", { name: /Test Request/ })
          .first()
          .click();
        const client = page.getByRole("dialog");
        // The operation requires a key: its Authentication section starts collapsed.
        const bearerField = client.getByLabel("Bearer Token");
        if (!(await bearerField.isVisible())) await client.getByText("Authentication").first().click();
        await bearerField.fill(token);
        // The body editor is CodeMirror: insertText replaces the selection without its auto-closing brackets.
        await client.locator(".cm-content").first().click();
        await page.keyboard.press("ControlOrMeta+A");
        await page.keyboard.insertText(JSON.stringify(order, null, 2));

        const answered = page.waitForResponse(
          (response) =>
            response.request().method() === "POST" && response.url() === `${server.baseUrl}/orders`,
        );
        await client.getByRole("button", { name: /^Send/ }).first().click();
        expect((await answered).status()).toBe(201);
        await client.getByText("201 Created").first().waitFor({ state: "visible" });

        const sent = requests.filter((request) => request.method === "POST");
        expect(sent).toHaveLength(1);
        expect(sent[0]?.url).toBe(`${server.baseUrl}/orders`);
        expect(sent[0]?.headers.authorization).toBe(`Bearer ${token}`);
        expect(JSON.parse(sent[0]?.body ?? "null")).toEqual(order);
        // The service stored it for the key's account.
        const listed = (await (await getPath(server.running, "/orders", bearer(token))).json()) as {
          orders: { instrument: string; quantity: number; status: string }[];
        };
        expect(listed.orders.map((o) => [o.instrument, o.quantity])).toEqual([["US0378331005", 3]]);
        expect(outside).toEqual([]);
        expect(errors).toEqual([]);
      });
    } finally {
      await server.stop();
    }
  });
});

describe("apiDocs over HTTP", () => {
  test("serves the bundle as immutable JavaScript, hidden from the OpenAPI 3.1 document", async () => {
    const server = await startDocsServer(DOCUMENTATION);
    try {
      const bundle = await fetch(`${server.baseUrl}${SCALAR_BUNDLE_PATH}`);
      expect(bundle.status).toBe(200);
      expect(bundle.headers.get("content-type")).toStartWith("text/javascript");
      expect(bundle.headers.get("cache-control")).toContain("immutable");
      expect((await bundle.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000);

      const document = (await (await fetch(`${server.baseUrl}/swagger/json`)).json()) as {
        openapi: string;
        info: { title: string };
        paths: Record<string, unknown>;
        components: { securitySchemes?: Record<string, unknown> };
      };
      expect(document.openapi).toBe("3.1.0");
      expect(document.info.title).toBe(TITLE);
      expect(Object.keys(document.paths)).toEqual(["/orders"]);
      expect(document.components.securitySchemes).toEqual({ bearerAuth: { type: "http", scheme: "bearer" } });

      const page = await (await fetch(`${server.baseUrl}/swagger`)).text();
      expect(page).toContain(`<title>${TITLE}</title>`);
      expect(page).toContain(`src="${SCALAR_BUNDLE_PATH}"`);
      expect(page).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)[^"'\s]*\.(js|css|woff2?)\b/);
    } finally {
      await server.stop();
    }
  });

  test("disabled: /swagger and /swagger/json answer 404", async () => {
    const server = await startDocsServer(DOCUMENTATION, false);
    try {
      for (const path of ["/swagger", "/swagger/json", SCALAR_BUNDLE_PATH]) {
        expect({ path, status: (await fetch(`${server.baseUrl}${path}`)).status }).toEqual({
          path,
          status: 404,
        });
      }
    } finally {
      await server.stop();
    }
  });
});
