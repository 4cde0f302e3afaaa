/**
 * The narrow Redis port the actor runtime needs: only the stream commands it uses, and their ioredis
 * implementation, on one Redis or a Redis Cluster client. Entries whose payload is gone (trimmed, or
 * lost with a Redis restart) come back with `fields: null`. Every command names one stream (one key),
 * except `readGroup` over several streams: in a Redis Cluster that is CROSSSLOT unless the streams share
 * a slot, so cluster callers read one stream per call.
 */
import type { Cluster, Redis } from "ioredis";

export interface StreamEntry {
  stream: string;
  id: string;
  fields: Record<string, string> | null;
  /** Delivered before to some consumer (taken over by the reclaimer): its handling may have started. */
  redelivered?: boolean;
}

export interface PendingEntry {
  id: string;
  consumer: string;
  idleMs: number;
  deliveries: number;
}

export interface GroupState {
  length: number;
  lag: number;
  pending: number;
  lastDeliveredId: string;
}

export interface StreamPort {
  /**
   * True when one `readGroup` may name one stream only: a Redis Cluster client (streams on different
   * slots in one XREADGROUP are CROSSSLOT). The actor then reads each stream with its own call.
   */
  readonly oneStreamPerRead?: boolean;
  /** Creates the group (and the stream) if missing; a group that exists is left as it is. */
  ensureGroup(stream: string, group: string): Promise<void>;
  /**
   * XREADGROUP of new entries (">"). `count` is per stream (Redis' COUNT): reading N streams may return
   * up to N x count entries. `blockMs` null: do not block (no BLOCK; BLOCK 0 would block for ever).
   */
  readGroup(
    group: string,
    consumer: string,
    streams: readonly string[],
    count: number,
    blockMs: number | null,
  ): Promise<StreamEntry[]>;
  ack(stream: string, group: string, ids: readonly string[]): Promise<void>;
  /** XAUTOCLAIM from `cursor` ("0-0" to start); `next` is "0-0" when the scan went round. */
  autoClaim(
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    count: number,
    cursor?: string,
  ): Promise<{ entries: StreamEntry[]; deletedIds: string[]; next: string }>;
  pendingIdle(stream: string, group: string, minIdleMs: number, count: number): Promise<PendingEntry[]>;
  add(stream: string, fields: Record<string, string>): Promise<string>;
  /**
   * Moves entry `id` of `stream` to dead letters: XADD `fields` to `deadLetterStream` and XACK `id` in
   * `group`, in one MULTI/EXEC on one Redis (both or neither). Returns the dead-letter entry's id.
   */
  deadLetterAtomically(
    stream: string,
    group: string,
    id: string,
    deadLetterStream: string,
    fields: Record<string, string>,
  ): Promise<string>;
  range(stream: string, start: string, end: string, count: number): Promise<StreamEntry[]>;
  remove(stream: string, ids: readonly string[]): Promise<number>;
  /** Trims entries below `minId`, never past it (XTRIM MINID ~). */
  trimBelow(stream: string, minId: string): Promise<number>;
  oldestPendingId(stream: string, group: string): Promise<string | null>;
  groupState(stream: string, group: string): Promise<GroupState | null>;
  length(stream: string): Promise<number>;
  consumers(stream: string, group: string): Promise<{ name: string; pending: number; idleMs: number }[]>;
  deleteConsumer(stream: string, group: string, consumer: string): Promise<void>;
}

type RawEntry = [id: string, fields: string[] | null];

function toFields(raw: string[] | null): Record<string, string> | null {
  if (!raw) return null;
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) fields[raw[i]!] = raw[i + 1]!;
  return fields;
}

function toEntries(stream: string, raw: RawEntry[]): StreamEntry[] {
  return raw.map(([id, fields]) => ({ stream, id, fields: toFields(fields) }));
}

export function isNoGroupError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOGROUP");
}

export function createIoredisStreamPort(redis: Redis | Cluster): StreamPort {
  return {
    oneStreamPerRead: redis.isCluster,
    async ensureGroup(stream, group) {
      try {
        // From id 0, not $: entries added before the group existed (after Redis came back empty) count too.
        await redis.xgroup("CREATE", stream, group, "0", "MKSTREAM");
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith("BUSYGROUP")) throw error;
      }
    },
    async readGroup(group, consumer, streams, count, blockMs) {
      const ids = streams.map(() => ">");
      const reply = (
        blockMs === null
          ? await redis.xreadgroup("GROUP", group, consumer, "COUNT", count, "STREAMS", ...streams, ...ids)
          : await redis.xreadgroup(
              "GROUP",
              group,
              consumer,
              "COUNT",
              count,
              "BLOCK",
              blockMs,
              "STREAMS",
              ...streams,
              ...ids,
            )
      ) as [string, RawEntry[]][] | null;
      if (!reply) return [];
      return reply.flatMap(([stream, entries]) => toEntries(stream, entries));
    },
    async ack(stream, group, ids) {
      if (ids.length > 0) await redis.xack(stream, group, ...ids);
    },
    async autoClaim(stream, group, consumer, minIdleMs, count, cursor = "0-0") {
      const reply = (await redis.call(
        "XAUTOCLAIM",
        stream,
        group,
        consumer,
        String(minIdleMs),
        cursor,
        "COUNT",
        String(count),
      )) as [string, RawEntry[], string[]?];
      const entries = toEntries(stream, reply[1] ?? []).map((entry) => ({ ...entry, redelivered: true }));
      return { entries, deletedIds: reply[2] ?? [], next: reply[0] ?? "0-0" };
    },
    async pendingIdle(stream, group, minIdleMs, count) {
      const reply = (await redis.call(
        "XPENDING",
        stream,
        group,
        "IDLE",
        String(minIdleMs),
        "-",
        "+",
        String(count),
      )) as [string, string, number, number][];
      return reply.map(([id, consumer, idleMs, deliveries]) => ({ id, consumer, idleMs, deliveries }));
    },
    add(stream, fields) {
      return redis.xadd(stream, "*", ...Object.entries(fields).flat()) as Promise<string>;
    },
    async deadLetterAtomically(stream, group, id, deadLetterStream, fields) {
      const flat = Object.entries(fields).flat();
      if (redis.isCluster) {
        // A Redis Cluster runs MULTI/EXEC on one slot only, and the dead-letter stream is another key
        // (another slot): XADD then XACK, as two commands. A crash between them leaves the entry
        // pending and dead-lettered again later (a duplicate dead-letter entry, never a lost one).
        const added = (await redis.xadd(deadLetterStream, "*", ...flat)) as string;
        await redis.xack(stream, group, id);
        return added;
      }
      const replies = await redis
        .multi()
        .xadd(deadLetterStream, "*", ...flat)
        .xack(stream, group, id)
        .exec();
      if (!replies) throw new Error("dead-letter transaction aborted");
      for (const [error] of replies) if (error) throw error;
      return replies[0]![1] as string;
    },
    async range(stream, start, end, count) {
      return toEntries(stream, (await redis.xrange(stream, start, end, "COUNT", count)) as RawEntry[]);
    },
    remove(stream, ids) {
      return ids.length > 0 ? redis.xdel(stream, ...ids) : Promise.resolve(0);
    },
    trimBelow(stream, minId) {
      return redis.xtrim(stream, "MINID", "~", minId);
    },
    async oldestPendingId(stream, group) {
      const [count, smallest] = (await redis.xpending(stream, group)) as [
        number,
        string | null,
        string | null,
        unknown,
      ];
      return count > 0 ? smallest : null;
    },
    async groupState(stream, group) {
      const length = await redis.xlen(stream);
      const groups = (await redis.xinfo("GROUPS", stream).catch((error: Error) => {
        if (error.message.includes("no such key")) return [];
        throw error;
      })) as unknown[][];
      for (const raw of groups) {
        const info: Record<string, unknown> = {};
        for (let i = 0; i + 1 < raw.length; i += 2) info[String(raw[i])] = raw[i + 1];
        if (info.name !== group) continue;
        const pending = Number(info.pending ?? 0);
        // Redis reports lag as nil when it cannot compute it cheaply (after deletions): fall back to an upper bound.
        const lag =
          info.lag === null || info.lag === undefined ? Math.max(length - pending, 0) : Number(info.lag);
        return { length, lag, pending, lastDeliveredId: String(info["last-delivered-id"] ?? "0-0") };
      }
      return null;
    },
    length(stream) {
      return redis.xlen(stream);
    },
    async consumers(stream, group) {
      const raw = (await redis.xinfo("CONSUMERS", stream, group)) as unknown[][];
      return raw.map((fields) => {
        const info: Record<string, unknown> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) info[String(fields[i])] = fields[i + 1];
        return {
          name: String(info.name),
          pending: Number(info.pending ?? 0),
          idleMs: Number(info.idle ?? 0),
        };
      });
    },
    async deleteConsumer(stream, group, consumer) {
      await redis.xgroup("DELCONSUMER", stream, group, consumer);
    },
  };
}
