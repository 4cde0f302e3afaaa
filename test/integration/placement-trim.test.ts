/**
 * Stream trimming (docs/ARCHITECTURE.md guarantee 5): the actors' upkeep trims the placement stream with
 * XTRIM MINID below the oldest pending entry only. An entry left pending by a consumer that died (it
 * read the entry and never acknowledged it) survives every trim, and so does everything after it;
 * once it is acknowledged, the next trim moves past it.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import {
  placementEnv,
  preloadOrders,
  redisFor,
  spawnActors,
  spawnVenue,
  waitUntilPlaced,
} from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(110_000);

const servers = useServers();
const { cleanup } = servers;

type RawEntry = [string, string[]];

const BATCH = 60;

test("XTRIM never cuts an entry that is still pending, nor anything after it", async () => {
  const env = placementEnv(servers, {
    TRIM_INTERVAL_MS: "1000",
    // Nobody reclaims the dead consumer's entry during this test.
    CLAIM_TIMEOUT_MS: "600000",
    ACTOR_CONCURRENCY: "32",
  });
  const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 0 }, cleanup);
  const actorEnv = { ...env, EXCHANGE_URL: venue.baseUrl };
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  const { redis, keys, stream } = redisFor(env, cleanup);
  const group = keys.placementGroup;
  // XTRIM MINID ~ removes whole radix-tree nodes only; small nodes let a small test see trimming.
  await redis.config("SET", "stream-node-max-entries", "10");

  // 1. A first batch, placed and acknowledged.
  const before = await preloadOrders(env, BATCH);
  // (This process does not trim: everything below the pending entry is trimmed while it is pending.)
  let actors = await spawnActors({ ...actorEnv, TRIM_INTERVAL_MS: "3600000" }, cleanup);
  await waitUntilPlaced(mongo.orders, before.length, {
    ids: before,
    timeoutMs: 60_000,
    intervalMs: 500,
    message: "first batch placed",
  });
  actors.process.signal("SIGTERM");
  expect(await actors.process.exited).toBe(0);

  // 2. A consumer reads one entry and dies without acknowledging it. (Its order id is in no document,
  // so the sweeper never re-dispatches it: the entry is the only trace.)
  const markerOrder = `marker-${crypto.randomUUID()}`;
  await redis.xadd(stream, "*", "order_id", markerOrder);
  const read = (await redis.xreadgroup(
    "GROUP",
    group,
    "dead-consumer",
    "COUNT",
    1,
    "STREAMS",
    stream,
    ">",
  )) as [string, RawEntry[]][] | null;
  const marker = read?.[0]?.[1][0];
  expect(marker?.[1]).toEqual(["order_id", markerOrder]);
  const markerId = marker![0];
  const belowMarker = async () => ((await redis.xrange(stream, "-", `(${markerId}`)) as RawEntry[]).length;
  // Nothing trimmed yet: every entry of the first batch (and any re-dispatch of it) is below the marker.
  const belowBefore = await belowMarker();
  expect(belowBefore).toBeGreaterThanOrEqual(BATCH);

  // 3. A second batch after it, placed by a new actor process (whose upkeep trims every second).
  const after = await preloadOrders(env, BATCH);
  actors = await spawnActors(actorEnv, cleanup);
  await waitUntilPlaced(mongo.orders, after.length, {
    ids: after,
    timeoutMs: 60_000,
    intervalMs: 500,
    message: "second batch placed",
  });
  await waitFor(async () => (await belowMarker()) < belowBefore, {
    timeoutMs: 15_000,
    intervalMs: 200,
    message: "entries below the pending one trimmed",
  });

  // The pending entry and everything after it are still there.
  expect((await redis.xrange(stream, markerId, markerId)) as RawEntry[]).toHaveLength(1);
  const fromMarker = (await redis.xrange(stream, markerId, "+")) as RawEntry[];
  expect(fromMarker.length).toBeGreaterThanOrEqual(BATCH + 1);
  const secondBatch = new Set(after);
  expect(fromMarker.filter(([, fields]) => secondBatch.has(fields[1]!)).length).toBeGreaterThanOrEqual(BATCH);
  const pending = (await redis.xpending(stream, group)) as [number, string, string, [string, string][]];
  expect(pending[0]).toBe(1);
  expect(pending[1]).toBe(markerId);
  const trimmedWhilePending = belowBefore - (await belowMarker());

  // 4. Once acknowledged (the reclaimer's job in production), trimming moves past it.
  await redis.xack(stream, group, markerId);
  await waitFor(async () => ((await redis.xrange(stream, markerId, markerId)) as RawEntry[]).length === 0, {
    timeoutMs: 15_000,
    intervalMs: 200,
    message: "trim past the acknowledged entry",
  });
  console.log(
    `[trim] ${trimmedWhilePending} of ${belowBefore} acknowledged entries below the pending one trimmed (XTRIM MINID ~ trims whole nodes); ` +
      `the pending entry and the ${fromMarker.length - 1} after it kept; after its ack the stream is down to ${await redis.xlen(stream)} entries`,
  );
});
