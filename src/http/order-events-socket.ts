/**
 * WebSocket /orders/events: the caller's order updates, live (docs/CONTRACT.md, "GET /orders/events").
 *
 * Everything a client can get wrong is answered over HTTP before the upgrade, as /orders answers it:
 * 401 (no valid key), 429 (rate limit: a reconnection storm spends the account's rate like requests),
 * 422 (`last_event_id` is not a stream id), 426 (not a WebSocket request), 503 (Redis cannot say where
 * the feed starts). Then 101, and frames (src/adapters/order-events.ts): the events after
 * `last_event_id`, or after the account's latest event at the upgrade when none is given, then live ones.
 *
 * The key comes in `Authorization: Bearer <key>` or, for browsers (which cannot set headers on a
 * WebSocket), as the subprotocol list `bearer, <key>`; the server then selects `bearer`, never
 * echoing the key. The header wins when both are sent.
 *
 * A plain GET route that upgrades by itself, not Elysia's `.ws()`: Elysia 1.4.30 leaves a path with a
 * `.ws()` route out of Bun's native routes, where `/orders/:id` then answers it (a 200 or 404, never
 * an upgrade). Elysia's Bun adapter calls the handlers found on `ws.data` (open, message, close).
 */
import { Elysia } from "elysia";
import { CLOSE_GOING_AWAY, type RedisOrderEventFeed } from "../adapters/order-event-feed.ts";
import { parseEventId } from "../adapters/order-events.ts";
import { RateLimitedError, UnauthenticatedError } from "../domain/errors.ts";
import type { Logger } from "../logger.ts";
import { orderEventsDocumentation } from "../orders/documentation.ts";
import { type Authentication, authenticate, bearerChallenge } from "./authentication.ts";
import { admit, type RateLimiting } from "./rate-limit.ts";

export const ORDER_EVENTS_PATH = "/orders/events";
/** The subprotocol that carries the key (`Sec-WebSocket-Protocol: bearer, <key>`), and the one selected. */
export const BEARER_SUBPROTOCOL = "bearer";

export interface OrderEventsSocketDeps {
  feed: Pick<RedisOrderEventFeed, "attach">;
  /** Where a feed without `last_event_id` starts: the account's latest event id ("0-0": none yet). */
  latestId(account: string): Promise<string>;
  auth: Authentication;
  rateLimiting: RateLimiting | null;
  logger: Logger;
}

/**
 * The Authorization value of a request (the header, else `bearer, <key>` from the subprotocols), and
 * whether the client offered the `bearer` subprotocol, which the answer must then select.
 */
function credentials(request: Request): { authorization: string | null; offersBearer: boolean } {
  const protocols = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  const offersBearer = protocols[0]?.toLowerCase() === BEARER_SUBPROTOCOL;
  const header = request.headers.get("authorization");
  if (header !== null && header.trim() !== "") return { authorization: header, offersBearer };
  if (offersBearer && protocols.length === 2 && protocols[1]) {
    return { authorization: `Bearer ${protocols[1]}`, offersBearer };
  }
  return { authorization: null, offersBearer };
}

const isUpgrade = (request: Request) => request.headers.get("upgrade")?.toLowerCase() === "websocket";

interface SocketData {
  open(ws: Bun.ServerWebSocket<SocketData>): void;
  message(): void;
  close(): void;
}

export function orderEventsSocket(deps: OrderEventsSocketDeps) {
  const { feed, auth, rateLimiting, logger } = deps;
  return new Elysia({ name: "order-events-socket" }).get(
    ORDER_EVENTS_PATH,
    async ({ request, server, set, status }) => {
      const { authorization, offersBearer } = credentials(request);
      let account: string;
      try {
        account = await authenticate(auth, authorization);
        await admit(rateLimiting, account, set.headers);
      } catch (error) {
        if (error instanceof UnauthenticatedError) {
          set.headers["www-authenticate"] = bearerChallenge(error);
          return status(401, { message: error.message });
        }
        // admit() has set Retry-After and the RateLimit headers.
        if (error instanceof RateLimitedError) return status(429, { message: error.message });
        logger.error("order events: authentication failed", { error });
        return status(500, { message: "Internal server error" });
      }
      const resumeFrom = new URL(request.url).searchParams.getAll("last_event_id");
      const lastEventId = resumeFrom.length === 1 ? parseEventId(resumeFrom[0] as string) : null;
      if (resumeFrom.length > 0 && lastEventId === null) {
        return status(422, {
          message: "A query parameter is invalid",
          errors: [
            {
              field: "last_event_id",
              message: "must be the id of an event received, such as 1718000000000-0 (once)",
            },
          ],
        });
      }
      if (!isUpgrade(request) || !server) {
        set.headers.upgrade = "websocket";
        return status(426, { message: "Connect with a WebSocket (Upgrade: websocket)" });
      }
      let from: string;
      try {
        from = lastEventId ?? (await deps.latestId(account));
      } catch (error) {
        logger.warn("order events: Redis unavailable; upgrade refused", { error });
        set.headers["retry-after"] = "1";
        return status(503, { message: "The event feed is unavailable; retry later" });
      }
      let detach = () => {};
      const data: SocketData = {
        open(ws) {
          const subscription = feed.attach(account, from, {
            // 0: dropped (the socket is closed or over its backpressure limit); -1: queued, still on its way.
            send: (frame) => ws.send(frame) !== 0,
            close: (code, reason) => ws.close(code, reason),
          });
          if (!subscription) ws.close(CLOSE_GOING_AWAY, "server shutting down");
          else detach = () => subscription.detach();
        },
        // The feed is one-way: what a client sends is ignored.
        message() {},
        close: () => detach(),
      };
      const headers = offersBearer ? { "sec-websocket-protocol": BEARER_SUBPROTOCOL } : undefined;
      if (server.upgrade(request, { headers, data })) return;
      return status(400, { message: "The WebSocket upgrade failed" });
    },
    // OpenAPI has no WebSocket: documented as the GET that answers 101 (src/orders/documentation.ts).
    { detail: orderEventsDocumentation() },
  );
}
