/** The request id: the caller's when it is a short token, else a new one; on every answer, errors included. */
import { expect, test } from "bun:test";
import { Elysia } from "elysia";
import { requestId, requestIdFrom } from "../../src/http/request-id.ts";

test("a short token is kept; anything else (too long, spaces, control characters, absent) is replaced", () => {
  expect(requestIdFrom("abc-1.2:3_X")).toBe("abc-1.2:3_X");
  for (const bad of [null, "", "has space", "x".repeat(129), "new\nline", "ünï"]) {
    const id = requestIdFrom(bad);
    expect(id).not.toBe(bad);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  }
});

test("every answer of every route carries it: a handler's, an error's, a 404's", async () => {
  const app = new Elysia()
    .use(requestId())
    .get("/ok", ({ requestId }) => ({ requestId }))
    .get("/fail", () => {
      throw new Error("boom");
    });
  const send = (path: string, id: string) =>
    app.handle(new Request(`http://localhost${path}`, { headers: { "x-request-id": id } }));
  const ok = await send("/ok", "r-1");
  expect(ok.headers.get("x-request-id")).toBe("r-1");
  expect(await ok.json()).toEqual({ requestId: "r-1" });
  expect((await send("/fail", "r-2")).headers.get("x-request-id")).toBe("r-2");
  expect((await send("/missing", "r-3")).headers.get("x-request-id")).toBe("r-3");
  expect((await send("/ok", "bad id")).headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
});
