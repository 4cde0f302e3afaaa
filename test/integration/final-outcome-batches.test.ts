/**
 * Final outcomes group-committed (MongoOrderRepository.finish): concurrent outcomes share one unordered
 * bulkWrite on the harness's MongoDB-wire server, and each caller still learns what happened to its own
 * order, even when the bulk can only say how many of its updates matched: applied, already (the same
 * outcome was there), conflict (another final state), missing. A store that stops answering fails every
 * outcome of the batch, and recording them again is idempotent.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { MongoClient } from "mongodb";
import { countOperations } from "../../src/adapters/mongo/operation-counter.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { databaseName } from "../../src/config.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { isolatedEnv, useServers } from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();
const clients: MongoClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((client) => client.close()));
});

const order = (id: string) =>
  newOrderRecord(
    id,
    { type: "limit", side: "buy", instrument: "US0378331005", limitPriceCents: 1_000 as Cents, quantity: 5 },
    new Date(),
    { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "batches" },
  );

/** A repository on its own database, counting the commands it sends. */
async function repository(timeoutMs = 10_000) {
  const env = isolatedEnv(servers);
  const client = new MongoClient(env.MONGO_URL!, { maxPoolSize: 8 });
  clients.push(client);
  const commands = new Map<string, number>();
  const db = countOperations(client.db(databaseName(env.MONGO_URL!)), (command) =>
    commands.set(command, (commands.get(command) ?? 0) + 1),
  );
  const orders = new MongoOrderRepository(db, { timeoutMs });
  await orders.ensureIndexes();
  return { orders, commands, raw: client.db(databaseName(env.MONGO_URL!)).collection("orders") };
}

describe("final outcomes in batches", () => {
  test("concurrent outcomes share bulkWrites; each caller gets its own order's answer", async () => {
    const { orders, commands, raw } = await repository();
    const fresh = Array.from({ length: 40 }, () => crypto.randomUUID());
    const [placedBefore, rejectedBefore] = [crypto.randomUUID(), crypto.randomUUID()];
    await Promise.all([...fresh, placedBefore, rejectedBefore].map((id) => orders.insert(order(id))));
    expect(await orders.markPlaced(placedBefore, "V-EARLIER", new Date())).toBe("applied");
    expect(await orders.markRejected(rejectedBefore, "venue said no", new Date())).toBe("applied");
    commands.clear();

    // One turn of the event loop: the batches hold fresh orders and the three that do not match together.
    const answers = await Promise.all([
      ...fresh.map((id, i) =>
        i % 10 === 9
          ? orders.markRejected(id, `reason ${i}`, new Date(), 2)
          : orders.markPlaced(id, `V-${i}`, new Date(), 1),
      ),
      orders.markPlaced(placedBefore, "V-EARLIER", new Date()),
      orders.markPlaced(rejectedBefore, "V-LATE", new Date()),
      orders.markPlaced(crypto.randomUUID(), "V-NOWHERE", new Date()),
    ]);
    expect(answers as string[]).toEqual([...fresh.map(() => "applied"), "already", "conflict", "missing"]);
    // 43 outcomes in at most 32 per bulkWrite; the three that matched nothing were read back.
    expect(commands.get("update")).toBe(2);
    expect(commands.get("find")).toBeGreaterThanOrEqual(3);

    const stored = await raw
      .find({ _id: { $in: [...fresh, placedBefore, rejectedBefore] } as never })
      .toArray();
    const byId = new Map(stored.map((document) => [String(document._id), document]));
    fresh.forEach((id, i) => {
      const document = byId.get(id)!;
      expect(document.status).toBe(i % 10 === 9 ? "rejected" : "placed");
      expect(document.venue_order_id).toBe(i % 10 === 9 ? null : `V-${i}`);
      expect(document.rejection_reason).toBe(i % 10 === 9 ? `reason ${i}` : null);
      expect(document.sweep_bucket).toBeUndefined();
      expect(typeof document.final_write_id).toBe("string");
    });
    expect(byId.get(placedBefore)?.venue_order_id).toBe("V-EARLIER");
    expect(byId.get(rejectedBefore)?.status).toBe("rejected");
    expect(byId.get(rejectedBefore)?.venue_order_id).toBeNull();
  });

  test("two writes of one order in the same batch: one applied, the other already or conflict", async () => {
    const { orders, raw } = await repository();
    const id = crypto.randomUUID();
    await orders.insert(order(id));
    const answers = await Promise.all([
      orders.markPlaced(id, "V-1", new Date()),
      orders.markPlaced(id, "V-1", new Date()),
      orders.markRejected(id, "late", new Date()),
    ]);
    expect(answers.filter((answer) => answer === "applied")).toHaveLength(1);
    const stored = await raw.findOne({ _id: id as never });
    // The winner's outcome is the stored one; a loser with the same outcome is "already", another "conflict".
    const winner = answers.indexOf("applied");
    expect(stored?.status).toBe(winner === 2 ? "rejected" : "placed");
    expect(answers as string[]).toEqual(
      winner === 2
        ? ["conflict", "conflict", "applied"]
        : answers.map((_, i) => (i === winner ? "applied" : i === 2 ? "conflict" : "already")),
    );
  });

  test("the store stops answering: every outcome of the batch fails; recorded again once it is back", async () => {
    const { orders, raw } = await repository(300);
    const ids = Array.from({ length: 8 }, () => crypto.randomUUID());
    await Promise.all(ids.map((id) => orders.insert(order(id))));
    servers.mongo.pause();
    let failures: unknown[];
    try {
      failures = await Promise.all(
        ids.map((id, i) =>
          orders.markPlaced(id, `V-${i}`, new Date()).then(
            () => null,
            (error) => error,
          ),
        ),
      );
    } finally {
      servers.mongo.resume();
    }
    expect(failures.every((failure) => failure instanceof Error)).toBe(true);
    // The paused bulk may have reached the store before it stopped, and then applied: "already".
    const again = await Promise.all(ids.map((id, i) => orders.markPlaced(id, `V-${i}`, new Date())));
    for (const answer of again) expect(["applied", "already"]).toContain(answer);
    const stored = await raw.find({ _id: { $in: ids } as never }).toArray();
    expect(stored.map((document) => document.status)).toEqual(ids.map(() => "placed"));
  });
});
