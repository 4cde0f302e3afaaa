/**
 * Which secondary indexes the service makes, against the harness's MongoDB-wire server: every one on
 * MongoDB; on FerretDB only those that enforce something (unique), since FerretDB never reads a plain
 * secondary index and every write pays for it (src/adapters/mongo/client.ts, ensureIndexes).
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { MongoApiKeyStore } from "../../src/adapters/mongo/api-key-store.ts";
import { boundedInFlight, isFerretDB } from "../../src/adapters/mongo/client.ts";
import { MongoExecutionStore } from "../../src/adapters/mongo/execution-store.ts";
import { MongoOrderRepository } from "../../src/adapters/mongo/order-repository.ts";
import { isolatedEnv, mongoFor, useServers } from "../support/system.ts";

setDefaultTimeout(60_000);

const servers = useServers();

let mongo: ReturnType<typeof mongoFor>;
beforeEach(() => {
  mongo = mongoFor(isolatedEnv(servers));
});
afterEach(async () => {
  await mongo?.client.close();
});

const indexNames = async (collection: string) =>
  (await mongo.db.collection(collection).listIndexes().toArray()).map((index) => index.name).sort();

describe("secondary indexes", () => {
  test("the store is recognised: FerretDB by its buildInfo, mongod not", async () => {
    const kind = servers.mongo.kind;
    if (kind.startsWith("ferretdb")) expect(await isFerretDB(mongo.db)).toBe(true);
    else if (kind === "mongod") expect(await isFerretDB(mongo.db)).toBe(false);
    // An external server (TEST_MONGO_URL) may be either: the test below follows what it says it is.
  });

  test("orders, executions and API keys: plain indexes on MongoDB only, unique ones everywhere", async () => {
    await new MongoOrderRepository(mongo.db, { timeoutMs: 5_000 }).ensureIndexes();
    await new MongoExecutionStore(mongo.db, { timeoutMs: 5_000, gate: boundedInFlight(4) }).ensureIndexes();
    const keys = new MongoApiKeyStore(mongo.db, { timeoutMs: 5_000 });
    await keys.ensureIndexes();
    await keys.ensureIndexes(); // idempotent either way

    if (await isFerretDB(mongo.db)) {
      expect(await indexNames("orders")).toEqual(["_id_"]);
      expect(await indexNames("executions")).toEqual(["_id_"]);
      expect(await indexNames("api_keys")).toEqual(["_id_", "hash_unique"]);
    } else {
      expect(await indexNames("orders")).toEqual(
        [
          "_id_",
          "account_id",
          "account_status_id",
          "status_created_at",
          "status_sweep_at",
          "sweep_bucket_partition_sweep_at",
        ].sort(),
      );
      expect(await indexNames("executions")).toEqual(["_id_", "order_id_seq"]);
      expect(await indexNames("api_keys")).toEqual(["_id_", "account", "hash_unique"]);
    }
  });
});
