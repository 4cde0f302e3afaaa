/**
 * Applying execution reports to real orders on the harness's MongoDB-wire store: idempotent, safe under
 * concurrent appliers of one order, converging after a crash between the insert and the summary,
 * overfills flagged.
 */
import { afterAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createExecutionBehaviour } from "../../actors/executions/execution-actor.ts";
import { boundedInFlight } from "../../src/adapters/mongo/client.ts";
import { MongoExecutionStore } from "../../src/adapters/mongo/execution-store.ts";
import { RedisOrderApplyLocks } from "../../src/adapters/order-apply-locks.ts";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import type { ExecutionReport } from "../../src/domain/execution.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { systemClock } from "../../src/domain/ports.ts";
import { silentLogger } from "../../src/logger.ts";
import { isolatedEnv, mongoFor, useServers } from "../support/system.ts";
import { uniqueName } from "../support/wait-for.ts";

const servers = useServers();
const clients: { close(): Promise<void> }[] = [];
afterAll(() => Promise.all(clients.map((c) => c.close())));

async function fixture(quantities: number[]) {
  const env = isolatedEnv(servers);
  const { client, db, orders } = mongoFor(env);
  clients.push(client);
  const ids = quantities.map(() => crypto.randomUUID());
  await orders.insertMany(
    quantities.map((quantity, i) => ({
      ...newOrderRecord(
        ids[i] as string,
        { type: "limit", side: "buy", instrument: "US0378331005", limitPriceCents: 1_000 as Cents, quantity },
        new Date(),
        { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "acme" },
      ),
      status: "placed",
    })),
  );
  const store = new MongoExecutionStore(db, { timeoutMs: 5_000, gate: boundedInFlight(16) });
  await store.ensureIndexes();
  return { store, orders, ids, executions: store.executions };
}

let seq = 0;
function trade(orderId: string, quantity = 1, price = 1_000): ExecutionReport {
  seq += 1;
  return {
    exec_id: `S-${seq}`,
    session: "S",
    seq,
    client_order_id: orderId,
    venue_order_id: `V-${orderId}`,
    exec_type: "trade",
    last_qty: quantity,
    last_price_cents: price,
    cum_qty: 0,
    leaves_qty: 0,
    transact_time: new Date().toISOString(),
  };
}

describe("applying execution reports", () => {
  test("a batch over several orders applies each report once; a redelivered batch changes nothing", async () => {
    const { store, orders, ids, executions } = await fixture([3, 2, 5]);
    const [a, b, c] = ids as [string, string, string];
    const batch = [trade(a), trade(b, 2, 2_000), trade(a, 2), trade(c, 1)];
    const first = await store.apply(batch, new Date());
    expect(first.results).toEqual(["applied", "applied", "applied", "applied"]);
    expect(first.updates.map((u) => [u.orderId, u.summary.status]).sort()).toEqual(
      [
        [a, "filled"],
        [b, "filled"],
        [c, "partially_filled"],
      ].sort(),
    );
    const again = await store.apply(batch, new Date());
    expect(again.results).toEqual(["duplicate", "duplicate", "duplicate", "duplicate"]);
    expect(again.updates).toEqual([]);
    const stored = await orders.find({ _id: { $in: ids } }).toArray();
    const byId = new Map(stored.map((o) => [o._id, o]));
    expect(byId.get(a)).toMatchObject({ status: "filled", filled_quantity: 3, execution_count: 2 });
    expect(byId.get(b)).toMatchObject({ status: "filled", filled_quantity: 2, filled_notional_cents: 4_000 });
    expect(byId.get(c)).toMatchObject({
      status: "partially_filled",
      filled_quantity: 1,
      venue_order_id: `V-${c}`,
    });
    expect(await executions.countDocuments({ order_id: { $in: ids } })).toBe(4);
  });

  test("execution actors applying one order at once lose no report and apply none twice", async () => {
    const { store, orders, ids, executions } = await fixture([40]);
    const id = ids[0] as string;
    const reports = Array.from({ length: 40 }, () => trade(id));
    const redis = new Redis(servers.redis.url);
    clients.push({ close: async () => void redis.disconnect() });
    const locks = new RedisOrderApplyLocks(redis, createRedisKeys(uniqueName("locks"), 1), 10_000);
    // Five actors (as five processes would), each handed every report once, in its own order.
    const actors = Array.from({ length: 5 }, () =>
      createExecutionBehaviour({
        store,
        locks,
        clock: systemClock,
        logger: silentLogger,
        batchMax: 8,
        publish: () => {},
      }),
    );
    const handled = await Promise.allSettled(
      actors.flatMap((actor, k) =>
        reports
          .map((report, i) => reports[(i + k * 7) % reports.length] ?? report)
          .map((report, i) =>
            actor.handle(
              { stream: "s", id: `${k}-${i}`, fields: { report: JSON.stringify(report) } },
              new AbortController().signal,
            ),
          ),
      ),
    );
    expect(handled.filter((h) => h.status === "rejected")).toEqual([]);
    const order = await orders.findOne({ _id: id });
    expect(order).toMatchObject({ status: "filled", filled_quantity: 40, execution_count: 40 });
    expect(await executions.countDocuments({ order_id: id })).toBe(40);
  });

  test("an overfill is flagged on the order, and a report of an unknown order is left for later", async () => {
    const { store, orders, ids, executions } = await fixture([1]);
    const id = ids[0] as string;
    const { results } = await store.apply([trade(id), trade(id), trade("no-such-order")], new Date());
    expect(results).toEqual(["applied", "overfill", "unknown_order"]);
    const order = await orders.findOne({ _id: id });
    expect(order).toMatchObject({ status: "filled", filled_quantity: 1 });
    const flagged = await executions.find({ order_id: id, flagged: { $ne: null } }).toArray();
    expect(flagged.map((e) => e.flagged)).toEqual(["overfill"]);
  });

  test("a crash between the insert and the summary write: the redelivery finds the copies and recomputes", async () => {
    const { store, orders, ids, executions } = await fixture([5]);
    const id = ids[0] as string;
    const reports = [trade(id, 2, 1_000), trade(id, 1, 4_000)];
    // What a crashed applier leaves behind: the executions stored, the order's summary never written.
    expect((await store.apply(reports, new Date())).results).toEqual(["applied", "applied"]);
    await orders.updateOne(
      { _id: id },
      {
        $unset: { filled_quantity: "", filled_notional_cents: "", execution_count: "" },
        $set: { status: "placed" },
      },
    );
    const redelivered = await store.apply([...reports, trade(id, 2, 1_000)], new Date());
    expect(redelivered.results).toEqual(["duplicate", "duplicate", "applied"]);
    expect(await orders.findOne({ _id: id })).toMatchObject({
      status: "filled",
      filled_quantity: 5,
      filled_notional_cents: 2 * 1_000 + 4_000 + 2 * 1_000,
      execution_count: 3,
    });
    expect(await executions.countDocuments({ order_id: id })).toBe(3);
  });
});
