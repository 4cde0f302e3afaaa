/**
 * The Redis client's own CPU per command (ioredis under Bun), with and without the TracingChannel
 * `hasSubscribers` getter that src/support/tracing-channel.ts adds (without it ioredis traces every
 * command for nobody). The two variants run in turns in one process against the harness's own
 * redis-server, so that a machine that gets busier hurts both alike; the table gives each one's median.
 *
 *   bun run bench:redis-client [--commands 30000] [--concurrency 64] [--rounds 5] [--smoke]
 */
import diagnostics from "node:diagnostics_channel";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { ensureTracingChannelHasSubscribers } from "../src/support/tracing-channel.ts";
import { startRedis } from "../test/support/servers/redis.ts";
import { runBenchmark } from "./output.ts";
import { medianTable } from "./process-stats.ts";
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

/** Client CPU (user + system) in µs per command: SET with PX, `CONCURRENCY` awaiting callers. */
async function microsPerCommand(redis: Redis): Promise<number> {
  const started = process.cpuUsage();
  await inParallel(COMMANDS, CONCURRENCY, (i) => redis.set(`bench:${i % 1_000}`, "v", "PX", 60_000));
  const used = process.cpuUsage(started);
  return (used.user + used.system) / COMMANDS;
}

runBenchmark("bench:redis-client", async () => {
  const server = await startRedis();
  const redis = new Redis(server.url, { lazyConnect: false });
  try {
    console.log(
      `ioredis under Bun ${Bun.version}: ${COMMANDS} SETs, ${CONCURRENCY} in flight, ${ROUNDS} round(s); ` +
        `the runtime ${runtimeHasGetter ? "has" : "lacks"} TracingChannel.hasSubscribers`,
    );
    await microsPerCommand(redis); // warm-up
    const results = { "as the runtime is": [] as number[], "with the getter": [] as number[] };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, on] of [
        ["as the runtime is", false],
        ["with the getter", true],
      ] as const) {
        setGetter(on);
        const micros = await microsPerCommand(redis);
        results[name].push(micros);
        console.log(`  round ${round}: ${name.padEnd(18)} ${micros.toFixed(1)} µs CPU per command`);
      }
    }
    console.log(medianTable("client µs CPU per command", results));
  } finally {
    setGetter(true);
    redis.disconnect();
    await server.stop();
  }
  return 0;
});
