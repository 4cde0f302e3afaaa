/** A redis-server of the harness (no persistence: a restarted server comes back empty). */
import { connect } from "node:net";
import { freePort } from "../wait-for.ts";
import { OwnedServer, respondsTo, type TestServer, tempDir } from "./owned-server.ts";

export class RedisServer extends OwnedServer {
  readonly kind: string = "redis-server";
  constructor(
    port: number,
    dir: string,
    /** More redis-server options (the cluster nodes' cluster-* settings). */
    private readonly extraArgs: string[] = [],
  ) {
    super(port, dir);
  }
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  protected command() {
    return [
      "redis-server",
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--dir",
      this.dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "no",
      "--loglevel",
      "warning",
      ...this.extraArgs,
    ];
  }
  protected ready() {
    return respondsTo(this.port, "PING\r\n", "+PONG");
  }
}

export async function startRedis(): Promise<TestServer> {
  return new RedisServer(await freePort(), tempDir("redis")).start();
}

export type RedisReply = string | number | null | RedisReply[];

/**
 * Sends `commands` in order on one new connection to the Redis at `port` and returns their replies
 * (an error reply rejects). Rejects after `timeoutMs`, so a paused or dead server cannot hang a test.
 */
export function redisCommands(
  port: number,
  commands: (string | number)[][],
  timeoutMs = 2_000,
): Promise<RedisReply[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(
      () => finish(new Error(`redis ${port}: no reply in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const finish = (error: Error | null, replies?: RedisReply[]) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(replies ?? []);
    };
    socket.once("error", (error) => finish(error));
    socket.once("connect", () => {
      socket.write(commands.map(encodeCommand).join(""));
    });
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const replies: RedisReply[] = [];
      let offset = 0;
      try {
        while (replies.length < commands.length) {
          const parsed = parseReply(buffer, offset);
          if (!parsed) return;
          replies.push(parsed.value);
          offset = parsed.next;
        }
      } catch (error) {
        return finish(error as Error);
      }
      finish(null, replies);
    });
  });
}

/** One command's reply (see redisCommands). */
export async function redisCommand(port: number, ...args: (string | number)[]): Promise<RedisReply> {
  return (await redisCommands(port, [args]))[0] ?? null;
}

function encodeCommand(args: (string | number)[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join("")}`;
}

/** Parses one RESP2 reply at `offset`; undefined while it is incomplete. */
function parseReply(buffer: Buffer, offset: number): { value: RedisReply; next: number } | undefined {
  const lineEnd = buffer.indexOf("\r\n", offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset] ?? 0);
  const line = buffer.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case "+":
      return { value: line, next };
    case "-":
      throw new Error(line);
    case ":":
      return { value: Number(line), next };
    case "$": {
      const length = Number(line);
      if (length < 0) return { value: null, next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString("utf8", next, next + length), next: next + length + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { value: null, next };
      const values: RedisReply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (!item) return undefined;
        values.push(item.value);
        at = item.next;
      }
      return { value: values, next: at };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}
