/**
 * Order events in Redis, the storage behind WebSocket /orders/events (src/http/order-events-socket.ts):
 * each account's capped stream `keys.orderEvents(account)`, whose entry ids are the event ids a client
 * resumes from, and the Pub/Sub channel `keys.orderEventsChannel` that tells every API process of each
 * new event as it is appended.
 *
 * Invariants:
 * - One Lua script appends and publishes: an event a client saw live is in its stream, so a resume finds
 *   it. The script touches one key (the account's stream, its own hash tag), so it runs on a Redis
 *   Cluster; a PUBLISH there reaches the subscribers of every node.
 * - Each published message carries the id of the entry before it in the stream (`prev`). A socket that
 *   last sent `prev` may send the message as is; any other id means it missed something (its process's
 *   subscriber reconnected, a catch-up overlapped), and it reads the stream from its last id instead.
 *   So no socket ever sends a duplicate or skips an event, whatever the subscriber lost.
 * - A socket that cannot keep that promise (Redis down mid-catch-up, a client too slow to take its
 *   frames) is closed; the client resumes with `last_event_id`.
 */

import type { OrderEvent, OrderEventPublisher } from "../domain/ports.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "./metrics.ts";
import type { RedisConnection } from "./redis.ts";
import type { RedisKeys } from "./redis-keys.ts";

/** KEYS[1] the account's stream; ARGV: channel, retained, account, frame body. Returns the entry id. */
const PUBLISH = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'frame', ARGV[4])
redis.call('PUBLISH', ARGV[1], cjson.encode({account = ARGV[3], id = id, prev = prev, frame = ARGV[4]}))
return id`;

type Scripted = RedisConnection & {
  orderEventPublish(
    stream: string,
    channel: string,
    retained: number,
    account: string,
    body: string,
  ): Promise<string>;
};

function withScripts(redis: RedisConnection): Scripted {
  const scripted = redis as Scripted;
  if (typeof scripted.orderEventPublish === "function") return scripted;
  redis.defineCommand("orderEventPublish", { numberOfKeys: 1, lua: PUBLISH });
  return scripted;
}

/** An event as a client receives it: the wire frame (JSON text) under its id. */
export interface StoredEvent {
  id: string;
  frame: string;
}

/**
 * The frame of an event without its id (the id is the stream entry's, known once it is appended):
 * prices in currency units, as the /orders answers show them.
 */
export function eventFrameBody(event: OrderEvent): string {
  const { execution } = event;
  return JSON.stringify({
    order_id: event.order_id,
    status: event.status,
    at: event.at.toISOString(),
    filled_quantity: event.filled_quantity,
    average_price: event.average_price_cents === null ? null : event.average_price_cents / 100,
    execution: execution
      ? {
          exec_id: execution.exec_id,
          exec_type: execution.exec_type,
          quantity: execution.quantity,
          price: execution.price_cents === null ? null : execution.price_cents / 100,
        }
      : null,
    rejection_reason: event.rejection_reason ?? null,
  });
}

/** The frame a client receives: the id first, then the body's fields. */
export function wireFrame(id: string, body: string): string {
  return `{"id":${JSON.stringify(id)},${body.slice(1)}`;
}

const MAX_ID_PART = 18446744073709551615n;

/** A stream id (`ms-seq`, each part a 64-bit unsigned integer) in Redis's spelling, or null. */
export function parseEventId(text: string): string | null {
  const match = /^(\d{1,20})-(\d{1,20})$/.exec(text);
  if (!match) return null;
  const [ms, seq] = [BigInt(match[1] as string), BigInt(match[2] as string)];
  if (ms > MAX_ID_PART || seq > MAX_ID_PART) return null;
  return `${ms}-${seq}`;
}

/** Orders two ids in Redis's spelling (no leading zeros): a shorter number is the smaller. */
export function compareEventIds(a: string, b: string): number {
  const [am = "", as = ""] = a.split("-");
  const [bm = "", bs = ""] = b.split("-");
  const decimal = (x: string, y: string) => x.length - y.length || (x < y ? -1 : x > y ? 1 : 0);
  return decimal(am, bm) || decimal(as, bs);
}

export interface RedisOrderEventsOptions {
  /** ORDER_EVENTS_RETAINED: events kept per account (approximately: MAXLEN ~). */
  retained: number;
  metrics: Pick<Metrics, "orderEventsPublished">;
  logger: Pick<Logger, "warn">;
}

export class RedisOrderEvents implements OrderEventPublisher {
  private readonly redis: Scripted;

  constructor(
    redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly options: RedisOrderEventsOptions,
  ) {
    this.redis = withScripts(redis);
  }

  async publish(event: OrderEvent): Promise<void> {
    try {
      await this.redis.orderEventPublish(
        this.keys.orderEvents(event.account),
        this.keys.orderEventsChannel,
        this.options.retained,
        event.account,
        eventFrameBody(event),
      );
      this.options.metrics.orderEventsPublished.inc({ result: "published" });
    } catch (error) {
      this.options.metrics.orderEventsPublished.inc({ result: "failed" });
      this.options.logger.warn("order event not published (GET /orders/{id} still shows the change)", {
        order_id: event.order_id,
        status: event.status,
        error,
      });
    }
  }

  /** Up to `limit` events of `account` after `lastEventId` (exclusive), oldest first. Rejects on Redis errors. */
  async readSince(account: string, lastEventId: string, limit: number): Promise<StoredEvent[]> {
    if (lastEventId === `${MAX_ID_PART}-${MAX_ID_PART}`) return [];
    const entries = await this.redis.xrange(
      this.keys.orderEvents(account),
      `(${lastEventId}`,
      "+",
      "COUNT",
      limit,
    );
    return entries.map(([id, fields]) => ({ id, frame: wireFrame(id, fieldValue(fields, "frame") ?? "{}") }));
  }

  /** The id of the account's latest event, "0-0" when it has none: where a feed without a resume id starts. */
  async latestId(account: string): Promise<string> {
    const [last] = await this.redis.xrevrange(this.keys.orderEvents(account), "+", "-", "COUNT", 1);
    return last?.[0] ?? "0-0";
  }
}

function fieldValue(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
