/**
 * The floor of bench/intake.ts: the least an order intake can do. A framework-free `Bun.serve` handler
 * that parses the JSON body and does the same two storage calls as the service (insertOne with
 * {w: "majority", j: true} of the same document, then XADD of the order id), with no validation,
 * metrics, logging, deadline or idempotency. It uses the service's own driver settings
 * (createMongoClient, createRedisClient) so that the comparison measures what the service adds on top.
 *
 * Environment: PORT, MONGO_URL, REDIS_URL, REDIS_KEY_PREFIX, MONGO_TIMEOUT_MS. Prints one line
 * `floor listening <port>` when ready; exits on SIGTERM.
 */
import { Long } from "mongodb";
import { createMongoClient, durableWrite } from "../src/adapters/mongo/client.ts";
import { createRedisClient } from "../src/adapters/redis.ts";
import { createRedisKeys } from "../src/adapters/redis-keys.ts";
import { databaseName } from "../src/config.ts";
import type { Cents } from "../src/domain/money.ts";
import { newOrderRecord, type OrderDraft } from "../src/domain/order.ts";

const env = process.env;
const mongoUrl = env.MONGO_URL ?? "mongodb://127.0.0.1:27017/orders";
const timeoutMs = Number(env.MONGO_TIMEOUT_MS ?? 2_000);
const mongo = createMongoClient(mongoUrl, { timeoutMs, maxPoolSize: 32 });
const orders = mongo.db(databaseName(mongoUrl)).collection("orders");
const redis = createRedisClient(env.REDIS_URL ?? "redis://127.0.0.1:6379", {
  name: "orders-floor",
  commandTimeoutMs: 500,
  failFastWhenDisconnected: true,
  autoPipelining: true,
});
redis.on("error", () => {});
const stream = createRedisKeys(env.REDIS_KEY_PREFIX ?? "orders", 1).placementStream(0);
const JSON_HEADERS = { "content-type": "application/json" };

await mongo.connect();

const server = Bun.serve({
  port: Number(env.PORT ?? 0),
  hostname: "127.0.0.1",
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    if (request.method !== "POST" || url.pathname !== "/orders") return new Response(null, { status: 404 });
    try {
      const body = (await request.json()) as Omit<OrderDraft, "limitPriceCents"> & {
        limit_price?: number | string | null;
      };
      const price = body.limit_price;
      const cents = price === undefined || price === null ? null : (Math.round(Number(price) * 100) as Cents);
      const order = newOrderRecord(
        Bun.randomUUIDv7(),
        {
          type: body.type,
          side: body.side,
          instrument: body.instrument,
          limitPriceCents: cents,
          quantity: body.quantity,
        },
        new Date(),
        { partitions: 1, dispatchGraceMs: 10_000, idempotencyKey: null, account: "floor" },
      );
      await orders.insertOne(
        { ...order, limit_price_cents: cents === null ? null : Long.fromNumber(cents) } as never,
        durableWrite(timeoutMs),
      );
      await redis.xadd(stream, "*", "order_id", order._id);
      return new Response(
        JSON.stringify({
          id: order._id,
          created_at: order.created_at.toISOString(),
          type: order.type,
          side: order.side,
          instrument: order.instrument,
          limit_price: cents === null ? null : cents / 100,
          quantity: order.quantity,
          status: order.status,
        }),
        { status: 201, headers: JSON_HEADERS },
      );
    } catch {
      return new Response('{"message":"Internal server error while placing the order"}', {
        status: 500,
        headers: JSON_HEADERS,
      });
    }
  },
});

process.stdout.write(`floor listening ${server.port}\n`);

process.on("SIGTERM", () => {
  void server.stop(true);
  void Promise.allSettled([mongo.close(), redis.quit()]).then(() => process.exit(0));
});
