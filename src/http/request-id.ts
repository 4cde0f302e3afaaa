/**
 * The request id, once for every route: the caller's X-Request-Id when it is a short token, else a new
 * UUID; echoed on every answer (errors included) and handed to handlers for their logs.
 */
import { Elysia } from "elysia";

const ACCEPTED = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's id if it is 1-128 characters of [A-Za-z0-9._:-]; anything else is replaced, not trusted. */
export function requestIdFrom(header: string | null): string {
  return header !== null && ACCEPTED.test(header) ? header : crypto.randomUUID();
}

export function requestId() {
  return (
    new Elysia({ name: "request-id" })
      // onRequest runs before parsing and routing, so even a 404 or an unparseable body carries the id.
      .onRequest(({ request, set }) => {
        set.headers["x-request-id"] = requestIdFrom(request.headers.get("x-request-id"));
      })
      .derive({ as: "global" }, ({ set }) => ({ requestId: String(set.headers["x-request-id"]) }))
  );
}
