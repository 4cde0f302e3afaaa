/**
 * Liveness of an `actors` process (issue #11 item 5): a read loop that makes no progress while entries
 * wait turns GET /health/live into 503 once the stall passes the limit, and back into 200 when reads go
 * through again.
 *
 * What the check measures (actors/placement/process.ts): the read loop's time without progress (a read
 * that returned, or a full actor that chose not to read) above STALL_LIMIT_MS, a constant of 30 s with
 * no setting in src/config.ts, while the last measurement of the stream lag is recent (within
 * 3 x STREAM_METRICS_INTERVAL_MS) and above 0. So the fault must stop the reads but not the lag's
 * measurement: stopping Redis (SIGSTOP, redis-pause.test.ts) times the reads out and the measurement
 * with them, which the check treats as an outage for readiness, not as a stuck process.
 *
 * The fault here: XREADGROUP denied by an ACL (`ACL SETUSER default -xreadgroup`). Every read of the
 * loop fails (NOPERM) and is retried with backoff, exactly as a read timing out on a dead connection
 * is; XINFO / XLEN / XPENDING (the lag), the Lua scripts, the reclaimer and MongoDB keep answering, so
 * the process looks ready while its mailbox is not read: the state liveness exists for. Orders
 * dispatched meanwhile wait (lag > 0). Granting XREADGROUP again heals the loop without a restart.
 *
 * The window is the default one (30 s), so this file takes about 35-40 s.
 */
import { expect, setDefaultTimeout, test } from "bun:test";
import {
  countPlaced,
  metricValue,
  placementEnv,
  preloadOrders,
  spawnActors,
  waitUntilPlaced,
} from "../support/placement.ts";
import { redisCommand } from "../support/servers/redis.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(100_000);

const servers = useServers();
const { cleanup } = servers;

/** actors/placement/process.ts's STALL_LIMIT_MS (a constant; no setting changes it). */
const STALL_LIMIT_MS = 30_000;
const ORDERS = 50;

async function live(
  opsUrl: string,
): Promise<{ status: number; body: { status?: string; stuck?: string[] } }> {
  const response = await fetch(`${opsUrl}/health/live`, { signal: AbortSignal.timeout(2_000) });
  return { status: response.status, body: (await response.json()) as { status?: string; stuck?: string[] } };
}

test("a read loop without progress while entries wait: /health/live 503 after the stall limit, 200 again once reads go through", async () => {
  // placementEnv: STREAM_METRICS_INTERVAL_MS 500, so the lag the check reads is at most 1.5 s old.
  const env = placementEnv(servers, { DISPATCH_GRACE_MS: "600000" });
  const mongo = mongoFor(env);
  cleanup.add(() => mongo.client.close());
  // No EXCHANGE_URL: the in-process venue (10 ms, no failures); the read loop is what this is about.
  const actors = await spawnActors(env, cleanup);
  const readFailures = async () => (await metricValue(actors, "placement_read_failures_total")) ?? 0;
  const lag = async () => (await metricValue(actors, "placement_stream_lag_entries")) ?? 0;
  expect((await live(actors.opsUrl)).status).toBe(200);

  const port = servers.redis.port;
  const restore = () => redisCommand(port, "ACL", "SETUSER", "default", "+xreadgroup");
  cleanup.add(restore);
  const failuresBefore = await readFailures();
  await redisCommand(port, "ACL", "SETUSER", "default", "-xreadgroup");
  const deniedAt = performance.now();
  // The XREADGROUP blocked at the denial still finishes (its BLOCK, 1 s); the next one fails. Only then
  // are the orders dispatched, so that none of them is read.
  await waitFor(async () => (await readFailures()) > failuresBefore, {
    timeoutMs: 5_000,
    intervalMs: 50,
    message: "a read failing",
  });
  const ids = await preloadOrders(env, ORDERS, { dispatchGraceMs: 600_000 });

  // Entries wait, reads fail, everything else answers: still live until the limit.
  await waitFor(async () => (await lag()) === ORDERS, {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: "the orders waiting on the stream (lag)",
  });
  let lastLiveMs = 0;
  const stuck = await waitFor(
    async () => {
      const answer = await live(actors.opsUrl);
      if (answer.status === 200) lastLiveMs = performance.now() - deniedAt;
      return answer.status === 503 ? answer : undefined;
    },
    { timeoutMs: STALL_LIMIT_MS + 15_000, intervalMs: 250, message: "/health/live 503" },
  );
  const stuckAfterMs = performance.now() - deniedAt;
  expect(stuck.body).toEqual({ status: "stuck", stuck: ["placement-read-loop"] });
  // Not before the limit (the last read may have returned up to one BLOCK, 1 s, after the denial
  // started: a blocked XREADGROUP finishes), and soon after it.
  expect(lastLiveMs).toBeGreaterThan(STALL_LIMIT_MS - 1_500);
  expect(stuckAfterMs).toBeGreaterThan(STALL_LIMIT_MS - 500);
  expect(stuckAfterMs).toBeLessThan(STALL_LIMIT_MS + 5_000);
  // Stuck is not unready: the dependencies answer; restarting the process is the cure liveness asks for.
  expect((await fetch(`${actors.opsUrl}/health/ready`)).status).toBe(200);
  expect(await countPlaced(mongo.orders, ids)).toBe(0);
  expect(await lag()).toBe(ORDERS);

  await restore();
  const restoredAt = performance.now();
  await waitFor(async () => (await live(actors.opsUrl)).status === 200, {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: "/health/live 200 again",
  });
  const liveAgainMs = performance.now() - restoredAt;
  await waitUntilPlaced(mongo.orders, ORDERS, {
    ids,
    timeoutMs: 30_000,
    intervalMs: 200,
    message: `all ${ORDERS} orders placed after reads were allowed again`,
  });
  expect((await live(actors.opsUrl)).status).toBe(200);
  expect(actors.process.logs).toMatch(/NOPERM/);
  console.log(
    `[liveness-stall] XREADGROUP denied with ${ORDERS} entries waiting: /health/live 200 until ` +
      `${Math.round(lastLiveMs)} ms, 503 at ${Math.round(stuckAfterMs)} ms (limit ${STALL_LIMIT_MS} ms; ` +
      `${await readFailures()} failed reads); allowed again: 200 after ${Math.round(liveAgainMs)} ms, all placed`,
  );
});
