/**
 * The executions dead-letter stream, through the operator's own command (`bun src/main.ts dlq ...
 * --executions` as a real process) and a real `orders executions` process: a report for an order
 * MongoDB does not know, and an entry that holds no report, are dead-lettered after MAX_DELIVERIES;
 * `list --executions` names the order and the fill; replay leaves both in place while the order is
 * unknown, and once it exists puts the report back, where it is applied once.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import type { ExecutionReport } from "../../src/domain/execution.ts";
import { uuidV7 } from "../../src/domain/ids.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { executionBacklog } from "../support/executions.ts";
import { type Env, placementEnv, redisFor, runDlq, spawnService } from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(90_000);

const servers = useServers();
const { cleanup } = servers;

type Line = Record<string, unknown>;
const dlq = async (env: Env, args: string[]): Promise<Line[]> =>
  (await runDlq(env, [...args, "--executions"])).lines.map((line) => JSON.parse(line) as Line);

function tradeFor(orderId: string, quantity: number): ExecutionReport {
  return {
    exec_id: `exec-${uuidV7()}`,
    session: "session-1",
    seq: 1,
    client_order_id: orderId,
    venue_order_id: `venue-${orderId}`,
    exec_type: "trade",
    last_qty: quantity,
    last_price_cents: 10_000,
    cum_qty: quantity,
    leaves_qty: 0,
    transact_time: new Date().toISOString(),
  };
}

describe("executions dead-letter stream", () => {
  test("a report for an unknown order is dead-lettered, listed, kept while the order is unknown, and applied once replayed", async () => {
    const env = placementEnv(servers, {
      MAX_DELIVERIES: "2",
      CLAIM_TIMEOUT_MS: "1500",
      BREAKER_TIMEOUT_MS: "500",
      RECLAIM_INTERVAL_MS: "200",
    });
    const executions = await spawnService("executions", env, { name: "executions" });
    cleanup.add(() => executions.process.kill());
    const { redis } = redisFor(env, cleanup);
    const keys = createRedisKeys(env.REDIS_KEY_PREFIX as string, 1, Number(env.EXECUTION_PARTITIONS ?? 2));

    const orderId = uuidV7();
    const report = tradeFor(orderId, 7);
    await redis.xadd(keys.executionStream(orderId), "*", "report", JSON.stringify(report));
    await redis.xadd(keys.executionStream(orderId), "*", "report", "not a report");

    const listed = await waitFor(
      async () => {
        const lines = await dlq(env, ["list"]);
        return lines.length === 2 ? lines : null;
      },
      { timeoutMs: 30_000, intervalMs: 500, message: "two executions dead letters" },
    );
    const reportEntry = listed.find((line) => line.order_id === orderId);
    const poisonEntry = listed.find((line) => line.report === null);
    expect(reportEntry).toMatchObject({
      order_id: orderId,
      exec_id: report.exec_id,
      exec_type: "trade",
      last_qty: 7,
      deliveries: "2",
    });
    expect(String(reportEntry?.source_stream)).toBe(keys.executionStream(orderId));
    expect(poisonEntry).toBeDefined();

    // The order is still unknown: nothing is replayed, both entries stay.
    expect((await dlq(env, ["replay", "--all"])).map((line) => line.result).sort()).toEqual([
      "not an execution report; left in place",
      "unknown order; left in place",
    ]);
    expect(await dlq(env, ["list"])).toHaveLength(2);

    // The order arrives (placed, 10 shares); the report is replayed by its entry id and applied.
    const { client, db, orders } = mongoFor(env);
    try {
      const draft = {
        type: "limit" as const,
        side: "buy" as const,
        instrument: "US0378331005",
        limitPriceCents: 10_000 as Cents,
        quantity: 10,
      };
      const record = newOrderRecord(orderId, draft, new Date(), {
        partitions: 1,
        dispatchGraceMs: 3_600_000,
        idempotencyKey: null,
        account: "dead-letter",
      });
      await orders.insertOne({ ...record, status: "placed" });
      expect(await dlq(env, ["replay", String(reportEntry?.id)])).toEqual([
        { id: reportEntry?.id, order_id: orderId, exec_id: report.exec_id, result: "replayed" },
      ]);
      const applied = await waitFor(
        async () => {
          const order = await orders.findOne({ _id: orderId });
          return order?.filled_quantity === 7 ? order : null;
        },
        { timeoutMs: 20_000, intervalMs: 250, message: "the replayed fill applied" },
      );
      expect(applied).toMatchObject({ status: "partially_filled", filled_quantity: 7, execution_count: 1 });
      expect(await db.collection("executions").countDocuments({ order_id: orderId })).toBe(1);

      // Only the entry without a report is left; replaying the same report again applies nothing twice.
      expect((await dlq(env, ["list"])).map((line) => line.id)).toEqual([poisonEntry?.id]);
      await redis.xadd(keys.executionStream(orderId), "*", "report", JSON.stringify(report));
      await waitFor(async () => (await executionBacklog(redis, keys)) === 0, {
        timeoutMs: 20_000,
        message: "the copy read and acknowledged",
      });
      expect(await orders.findOne({ _id: orderId })).toMatchObject({
        filled_quantity: 7,
        execution_count: 1,
      });
      expect(await db.collection("executions").countDocuments({ order_id: orderId })).toBe(1);
    } finally {
      await client.close();
    }
  });
});
