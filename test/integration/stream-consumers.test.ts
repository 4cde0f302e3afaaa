/** Consumer names of gone processes are pruned; a consumer that still holds entries never is. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createIoredisStreamPort } from "../../actors/runtime/redis-streams.ts";
import { createStreamUpkeep } from "../../actors/runtime/stream-upkeep.ts";
import { createRedisClient } from "../../src/adapters/redis.ts";
import { startRedis, type TestServer } from "../support/servers/servers.ts";
import { uniqueName } from "../support/wait-for.ts";

let redis: TestServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

test("pruneConsumers deletes idle consumers with nothing pending and keeps the others", async () => {
  const client = createRedisClient(redis.url, { name: "prune-test" });
  try {
    const port = createIoredisStreamPort(client);
    const stream = uniqueName("s");
    const group = "g";
    await port.ensureGroup(stream, group);
    await port.add(stream, { order_id: "a" });
    await port.add(stream, { order_id: "b" });
    await port.readGroup(group, "holder", [stream], 1, 10); // keeps its entry: pending 1
    const [done] = await port.readGroup(group, "gone", [stream], 1, 10);
    await port.ack(stream, group, [done!.id]); // finished its work: pending 0
    const upkeep = createStreamUpkeep({ port, streams: [stream], group, deadLetterStream: uniqueName("dl") });

    expect(await upkeep.pruneConsumers(60 * 60_000)).toBe(0);
    expect(await upkeep.pruneConsumers(0)).toBe(1);
    expect((await port.consumers(stream, group)).map((c) => c.name)).toEqual(["holder"]);
  } finally {
    client.disconnect();
  }
});
