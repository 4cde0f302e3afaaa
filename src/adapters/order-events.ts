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

/** Where a subscription's frames go: one WebSocket. `send` is false when the frame was dropped. */
export interface EventSink {
  send(frame: string): boolean;
  close(code: number, reason: string): void;
}

/** A message of the channel, as the script publishes it. */
interface LiveEvent {
  account: string;
  id: string;
  prev: string;
  frame: string;
}

/** Stream entries read per XRANGE of a catch-up. */
const PAGE = 500;
/** Live events held while a catch-up runs; past it they are dropped and the catch-up reads once more. */
const MAX_PENDING = 1_000;
/** WebSocket close codes (RFC 6455 §7.4.1): the server goes away; try again later (resume). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_TRY_AGAIN = 1013;

/** One socket's feed: a catch-up from the stream, then live events, each id once and in order. */
class Subscription {
  private syncing = false;
  private again = false;
  private pending: LiveEvent[] = [];
  closed = false;

  constructor(
    readonly account: string,
    private lastId: string,
    private readonly sink: EventSink,
    private readonly events: Pick<RedisOrderEvents, "readSince">,
  ) {}

  offer(event: LiveEvent): void {
    if (this.closed) return;
    if (!this.syncing) {
      if (!this.deliver(event)) this.sync();
    } else if (this.pending.length < MAX_PENDING) {
      this.pending.push(event);
    } else {
      this.pending = [];
      this.again = true;
    }
  }

  /** Reads the stream from the last id sent; live events meanwhile wait (or make it read again). */
  sync(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    void this.catchUp();
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.sink.close(code, reason);
  }

  private async catchUp(): Promise<void> {
    try {
      do {
        this.again = false;
        for (;;) {
          const page = await this.events.readSince(this.account, this.lastId, PAGE);
          for (const event of page) this.send(event.id, event.frame);
          if (page.length < PAGE || this.closed) break;
        }
        // No await from here to the end of the loop: nothing can slip in between these and `syncing`.
        const held = this.pending;
        this.pending = [];
        for (const event of held) {
          if (!this.deliver(event)) {
            this.again = true;
            break;
          }
        }
      } while (this.again && !this.closed);
    } catch {
      this.close(CLOSE_TRY_AGAIN, "event feed unavailable; reconnect with last_event_id");
    } finally {
      this.syncing = false;
    }
  }

  /** Sends a live event that follows the last one sent; false when something came in between. */
  private deliver(event: LiveEvent): boolean {
    if (compareEventIds(event.id, this.lastId) <= 0) return true;
    if (event.prev !== this.lastId) return false;
    this.send(event.id, wireFrame(event.id, event.frame));
    return true;
  }

  private send(id: string, frame: string): void {
    if (this.closed) return;
    this.lastId = id;
    if (!this.sink.send(frame))
      this.close(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect with last_event_id");
  }
}

export interface OrderEventFeedHooks {
  onSubscribersChanged?(count: number): void;
  onSubscribeFailed?(error: unknown): void;
}

/**
 * The fan-out of one API process: ONE subscriber connection (SUBSCRIBE to the channel) whatever the
 * number of sockets, each message handed to the sockets of its account. The subscriber reconnects by
 * itself; after every (re)subscription each socket reads the stream from its last id, since messages
 * published meanwhile were lost to this process.
 */
export class RedisOrderEventFeed {
  private readonly byAccount = new Map<string, Set<Subscription>>();
  private count = 0;
  private closed = false;

  constructor(
    private readonly subscriber: RedisConnection,
    private readonly events: Pick<RedisOrderEvents, "readSince">,
    private readonly channel: string,
    private readonly hooks: OrderEventFeedHooks = {},
  ) {}

  start(): void {
    this.subscriber.on("message", this.onMessage);
    this.subscriber.on("ready", this.subscribe);
    void this.subscribe();
  }

  /** Feeds `sink` the events of `account` after `fromId`, then live ones; null once the feed is closed. */
  attach(account: string, fromId: string, sink: EventSink): { detach(): void } | null {
    if (this.closed) return null;
    const subscription = new Subscription(account, fromId, sink, this.events);
    const set = this.byAccount.get(account) ?? new Set<Subscription>();
    this.byAccount.set(account, set);
    set.add(subscription);
    this.changed(1);
    subscription.sync();
    return {
      detach: () => {
        subscription.closed = true; // the socket is gone: nothing more is sent
        if (!set.delete(subscription)) return;
        if (set.size === 0 && this.byAccount.get(account) === set) this.byAccount.delete(account);
        this.changed(-1);
      },
    };
  }

  /** Closes every socket (going away: clients resume elsewhere) and takes no new ones. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.subscriber.off("message", this.onMessage);
    this.subscriber.off("ready", this.subscribe);
    const sets = [...this.byAccount.values()];
    this.byAccount.clear();
    for (const set of sets) {
      const subscriptions = [...set];
      set.clear();
      for (const subscription of subscriptions) subscription.close(CLOSE_GOING_AWAY, "server shutting down");
    }
    this.changed(-this.count);
  }

  private readonly subscribe = async (): Promise<void> => {
    try {
      await this.subscriber.subscribe(this.channel);
    } catch (error) {
      // The next "ready" (a reconnection) subscribes again.
      this.hooks.onSubscribeFailed?.(error);
      return;
    }
    for (const set of this.byAccount.values()) for (const subscription of set) subscription.sync();
  };

  private readonly onMessage = (channel: string, message: string): void => {
    if (channel !== this.channel || this.closed) return;
    let event: LiveEvent;
    try {
      event = JSON.parse(message) as LiveEvent;
    } catch {
      return;
    }
    const set = this.byAccount.get(event.account);
    if (set) for (const subscription of set) subscription.offer(event);
  };

  private changed(delta: number): void {
    this.count += delta;
    this.hooks.onSubscribersChanged?.(this.count);
  }
}
