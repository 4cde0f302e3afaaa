/**
 * Intake's group commit (MongoOrderRepository.insert) on the harness's MongoDB-wire server: orders of
 * one turn share an insertMany, and an id already stored fails only its own order, as
 * DuplicateOrderIdError (the service answers that one by its Idempotency-Key or a new id).
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { MongoClient } from "mongodb";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { databaseName } from "../../src/config.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { DuplicateOrderIdError } from "../../src/domain/ports.ts";
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
    { type: "market", side: "sell", instrument: "US0378331005", limitPriceCents: null, quantity: 3 },
    new Date(),
    { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "inserts" },
  );

test("a stored id fails only its own order of the batch, as DuplicateOrderIdError", async () => {
  const env = isolatedEnv(servers);
  const client = new MongoClient(env.MONGO_URL!, { maxPoolSize: 4 });
  clients.push(client);
  const db = client.db(databaseName(env.MONGO_URL!));
  const orders = new MongoOrderRepository(db, { timeoutMs: 10_000 });
  await orders.ensureIndexes();
  const [stored, ...fresh] = Array.from({ length: 4 }, () => crypto.randomUUID());
  await orders.insert(order(stored!));

  const answers = await Promise.all(
    [fresh[0]!, stored!, ...fresh.slice(1)].map((id) =>
      orders.insert(order(id)).then(
        () => "stored",
        (error: Error) => error,
      ),
    ),
  );
  expect(answers[0]).toBe("stored");
  expect(answers[1]).toBeInstanceOf(DuplicateOrderIdError);
  expect((answers[1] as DuplicateOrderIdError).message).toContain(stored!);
  expect(answers.slice(2)).toEqual(["stored", "stored"]);
  expect(await db.collection("orders").countDocuments({ account: "inserts" })).toBe(4);
});
