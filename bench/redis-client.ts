/**
 * What one Redis command costs the client (ioredis under Bun) and the server, in three variants run in
 * turns in one process against the harness's own redis-server, so that a machine that gets busier hurts
 * them alike; the tables give each one's median:
 * - as the runtime is: without the TracingChannel `hasSubscribers` getter that
 *   src/support/tracing-channel.ts adds (ioredis then traces every command for nobody), one write per
 *   command;
 * - with the getter, one write per command (REDIS_AUTO_PIPELINING=false);
 * - with the getter, auto-pipelined (the service's default): commands issued in the same turn of the
 *   event loop share one write.
 *
 *   bun run bench:redis-client [--commands 30000] [--concurrency 64] [--rounds 5] [--smoke]
 */
import diagnostics from "node:diagnostics_channel";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { ensureTracingChannelHasSubscribers } from "../src/support/tracing-channel.ts";
import { startRedis } from "../test/support/servers/redis.ts";
import { runBenchmark } from "./output.ts";
import { medianTable, serverCpuMs } from "./process-stats.ts";
import { inParallel } from "./store-load.ts";

const { values: args } = parseArgs({
  options: {
    commands: { type: "string" },
    concurrency: { type: "string" },
    rounds: { type: "string" },
    smoke: { type: "boolean", default: false },
  },
});
const COMMANDS = Number(args.commands ?? (args.smoke ? 2_000 : 30_000));
const CONCURRENCY = Number(args.concurrency ?? 64);
const ROUNDS = Number(args.rounds ?? (args.smoke ? 1 : 5));

const tracingPrototype = Object.getPrototypeOf(diagnostics.tracingChannel("bench:probe")) as object;
const runtimeHasGetter = "hasSubscribers" in tracingPrototype;

function setGetter(on: boolean): void {
  if (on) ensureTracingChannelHasSubscribers();
  else if (!runtimeHasGetter) Reflect.deleteProperty(tracingPrototype, "hasSubscribers");
}

/** Client and server CPU (user + system) in µs per command: SET with PX, `CONCURRENCY` awaiting callers. */
async function microsPerCommand(redis: Redis, port: number): Promise<{ client: number; server: number }> {
  const started = process.cpuUsage();
  const serverStarted = serverCpuMs(port);
  await inParallel(COMMANDS, CONCURRENCY, (i) => redis.set(`bench:${i % 1_000}`, "v", "PX", 60_000));
  const used = process.cpuUsage(started);
  return {
    client: (used.user + used.system) / COMMANDS,
    server: ((serverCpuMs(port) - serverStarted) * 1_000) / COMMANDS,
  };
}

runBenchmark("bench:redis-client", async () => {
  const server = await startRedis();
  const oneWriteEach = new Redis(server.url, { lazyConnect: false });
  const pipelined = new Redis(server.url, { lazyConnect: false, enableAutoPipelining: true });
  const variants = [
    { name: "as the runtime is", getter: false, redis: oneWriteEach },
    { name: "with the getter", getter: true, redis: oneWriteEach },
    { name: "getter + auto-pipelined", getter: true, redis: pipelined },
  ];
  try {
    console.log(
      `ioredis under Bun ${Bun.version}: ${COMMANDS} SETs, ${CONCURRENCY} in flight, ${ROUNDS} round(s); ` +
        `the runtime ${runtimeHasGetter ? "has" : "lacks"} TracingChannel.hasSubscribers`,
    );
    for (const { redis } of variants) await microsPerCommand(redis, server.port); // warm-up
    const client: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    const serverSide: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const { name, getter, redis } of variants) {
        setGetter(getter);
        const micros = await microsPerCommand(redis, server.port);
        client[name]!.push(micros.client);
        serverSide[name]!.push(micros.server);
        console.log(
          `  round ${round}: ${name.padEnd(24)} client ${micros.client.toFixed(1)}, ` +
            `redis-server ${micros.server.toFixed(1)} µs CPU per command`,
        );
      }
    }
    console.log(medianTable("client µs CPU per command", client));
    console.log(medianTable("redis-server µs CPU per command", serverSide));
  } finally {
    setGetter(true);
    oneWriteEach.disconnect();
    pipelined.disconnect();
    await server.stop();
  }
  return 0;
});
