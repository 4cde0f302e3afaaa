/**
 * The per-process fan-out of order events to WebSockets (/orders/events): one subscriber connection
 * per API process, each socket a subscription that catches up from its account's stream
 * (src/adapters/order-events.ts) and then takes live events, each id once and in order.
 */
import { compareEventIds, type RedisOrderEvents, wireFrame } from "./order-events.ts";
import type { RedisConnection } from "./redis.ts";

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
 * number of sockets, each message handed to the sockets of its account. Subscribed only while a socket
 * is attached: the channel carries every order's events, which a process without sockets would receive
 * and parse for nothing (about 4% of an API process's CPU in a profiled bench:system run). The
 * subscriber reconnects by itself; after every (re)subscription each socket reads the stream from its
 * last id, since messages published meanwhile were lost to this process.
 */
export class RedisOrderEventFeed {
  private readonly byAccount = new Map<string, Set<Subscription>>();
  private count = 0;
  private closed = false;
  /** What this process last asked Redis for; changed one request at a time (`reconcile`). */
  private subscribed = false;
  private reconciling: Promise<void> = Promise.resolve();

  constructor(
    private readonly subscriber: RedisConnection,
    private readonly events: Pick<RedisOrderEvents, "readSince">,
    private readonly channel: string,
    private readonly hooks: OrderEventFeedHooks = {},
  ) {}

  start(): void {
    this.subscriber.on("message", this.onMessage);
    this.subscriber.on("ready", this.onReady);
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
    this.subscriber.off("ready", this.onReady);
    const sets = [...this.byAccount.values()];
    this.byAccount.clear();
    for (const set of sets) {
      const subscriptions = [...set];
      set.clear();
      for (const subscription of subscriptions) subscription.close(CLOSE_GOING_AWAY, "server shutting down");
    }
    this.changed(-this.count);
  }

  /** A (re)connection: whatever was subscribed before, messages published meanwhile were lost here. */
  private readonly onReady = (): void => {
    this.subscribed = false;
    this.reconcile();
  };

  /**
   * Subscribes when a socket is attached and unsubscribes when none is, one request at a time, so that
   * a socket attaching while the last one's UNSUBSCRIBE is under way ends subscribed.
   */
  private reconcile(): void {
    this.reconciling = this.reconciling.then(async () => {
      const wanted = this.count > 0 && !this.closed;
      if (wanted === this.subscribed) return;
      if (!wanted) {
        this.subscribed = false;
        await this.subscriber.unsubscribe(this.channel).catch(() => {}); // a stray message is ignored
        return;
      }
      try {
        await this.subscriber.subscribe(this.channel);
      } catch (error) {
        // The next "ready" (a reconnection) subscribes again.
        this.hooks.onSubscribeFailed?.(error);
        return;
      }
      this.subscribed = true;
      for (const set of this.byAccount.values()) for (const subscription of set) subscription.sync();
    });
  }

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
    this.reconcile();
  }
}
