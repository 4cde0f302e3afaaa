/**
 * A report the real store refuses, through a real `orders executions` process: FerretDB on PostgreSQL
 * cannot store a string holding a NUL character (PostgreSQL's jsonb has no \u0000), so an execution
 * document whose venue order id holds one fails its insert on every try, while the store takes every
 * other write. The reports read with it are applied, the refused one is left pending, then
 * dead-lettered after MAX_DELIVERIES with the store's error, and counted as refused; reports appended
 * after it are applied meanwhile (before this, one such report stopped every fill behind it).
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { createRedisKeys } from "../../src/adapters/redis-keys.ts";
import type { ExecutionReport } from "../../src/domain/execution.ts";
import { uuidV7 } from "../../src/domain/ids.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord } from "../../src/domain/order.ts";
import { type Env, placementEnv, redisFor, runDlq, spawnService } from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(90_000);

const servers = useServers();
const { cleanup } = servers;

function trade(orderId: string, quantity: number, venueOrderId = `venue-${orderId}`): ExecutionReport {
  return {
    exec_id: `exec-${uuidV7()}`,
    session: "session-1",
    seq: 1,
    client_order_id: orderId,
    venue_order_id: venueOrderId,
    exec_type: "trade",
    last_qty: quantity,
    last_price_cents: 10_000,
    cum_qty: quantity,
    leaves_qty: 10 - quantity,
    transact_time: new Date().toISOString(),
  };
}

const metricValue = async (opsUrl: string, series: string): Promise<number> => {
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(" ")[1]) : 0;
};

describe("a report the store refuses", () => {
  test("is left pending and dead-lettered with the store's error, while the reports around it are applied", async () => {
    const env: Env = placementEnv(servers, {
      MAX_DELIVERIES: "2",
      CLAIM_TIMEOUT_MS: "1500",
      BREAKER_TIMEOUT_MS: "500",
      RECLAIM_INTERVAL_MS: "200",
    });
    const { redis } = redisFor(env, cleanup);
    const keys = createRedisKeys(env.REDIS_KEY_PREFIX as string, 1, Number(env.EXECUTION_PARTITIONS ?? 2));
    const { client, db, orders } = mongoFor(env);
    cleanup.add(() => client.close());

    const [good, refused, later] = [uuidV7(), uuidV7(), uuidV7()];
    for (const id of [good, refused, later]) {
      const record = newOrderRecord(
        id,
        {
          type: "limit",
          side: "buy",
          instrument: "US0378331005",
          limitPriceCents: 10_000 as Cents,
          quantity: 10,
        },
        new Date(),
        { partitions: 1, dispatchGraceMs: 3_600_000, idempotencyKey: null, account: "refusals" },
      );
      await orders.insertOne({ ...record, status: "placed", venue_order_id: `venue-${id}` });
    }
    const executions = await spawnService("executions", env, { name: "executions" });
    cleanup.add(() => executions.process.kill());

    // One read takes both: the refused report fails the batch's insert as a whole on FerretDB.
    const bad = trade(refused, 5, "venue-\u0000-id");
    await redis
      .multi()
      .xadd(keys.executionStream(good), "*", "report", JSON.stringify(trade(good, 3)))
      .xadd(keys.executionStream(refused), "*", "report", JSON.stringify(bad))
      .exec();
    const filled = (id: string, quantity: number) =>
      waitFor(
        async () => {
          const order = await orders.findOne({ _id: id });
          return order?.filled_quantity === quantity ? order : null;
        },
        { timeoutMs: 20_000, intervalMs: 100, message: `order ${id} filled ${quantity}` },
      );
    expect(await filled(good, 3)).toMatchObject({ status: "partially_filled", execution_count: 1 });

    // Appended while the refused one waits for its next delivery: applied at once.
    await redis.xadd(keys.executionStream(later), "*", "report", JSON.stringify(trade(later, 4)));
    expect(await filled(later, 4)).toMatchObject({ status: "partially_filled", execution_count: 1 });
    const before = await runDlq(env, ["list", "--executions"]);
    expect(before.lines).toEqual([]);

    const [deadLetter] = await waitFor(
      async () => {
        const lines = (await runDlq(env, ["list", "--executions"])).lines.map(
          (line) => JSON.parse(line) as Record<string, unknown>,
        );
        return lines.length > 0 ? lines : null;
      },
      { timeoutMs: 30_000, intervalMs: 500, message: "the refused report dead-lettered" },
    );
    expect(deadLetter).toMatchObject({ order_id: refused, exec_id: bad.exec_id, deliveries: "2" });
    expect(String(deadLetter?.last_error)).toContain(`the store refused execution report ${bad.exec_id}`);
    expect(String(deadLetter?.last_error)).toContain("unsupported Unicode escape sequence");
    expect(
      await metricValue(
        executions.opsUrl,
        'executions_reports_applied_total{outcome="refused",process_kind="executions"}',
      ),
    ).toBeGreaterThanOrEqual(2);

    // Nothing of it was stored; the orders around it hold exactly their own fill.
    const untouched = await orders.findOne({ _id: refused });
    expect(untouched?.status).toBe("placed");
    expect(untouched?.execution_count ?? 0).toBe(0);
    expect(untouched?.filled_quantity ?? 0).toBe(0);
    expect(await db.collection("executions").countDocuments({ order_id: refused })).toBe(0);
    expect(await db.collection("executions").countDocuments({ order_id: good })).toBe(1);
  });
});
