/**
 * `orders reconcile` as a real process against a real venue (`orders exchange`) and the real store:
 * a withdrawn, a rejected and a parked order that the venue has are each reported, with the venue's
 * order id, and so are a placed order the venue does not have and one it knows under another venue
 * order id; exit 1. The unplaced kinds that the venue does not have, a placed order it has under the
 * recorded id, a filled order, and orders older than --hours are not; with nothing to report it exits
 * 0; with the venue gone it reports every look-up it could not make and exits 3. Each run's outcome lands in MongoDB, and a real `actors` process
 * exports it as the orders_reconcile_* gauges the alerts read.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import type { ReconciliationOutcome } from "../../src/adapters/mongo/reconciliation-store.ts";
import type { Cents } from "../../src/domain/money.ts";
import { newOrderRecord, type OrderStatus } from "../../src/domain/order.ts";
import { createHttpExchange } from "../../src/exchange/http-exchange.ts";
import { type Env, placementEnv, runCommand, spawnActors, spawnVenue } from "../support/placement.ts";
import { mongoFor, useServers } from "../support/system.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(90_000);

const servers = useServers();
const { cleanup } = servers;

async function reconcile(env: Env, args: string[]) {
  const { code, lines, stderr } = await runCommand(env, "reconcile", args);
  return { code, stderr, lines: lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

async function lastReconciliation(env: Env) {
  const { client, db } = mongoFor(env);
  try {
    return await db
      .collection<ReconciliationOutcome & { _id: string }>("reconciliations")
      .findOne({ _id: "last" });
  } finally {
    await client.close();
  }
}

/** The orders_reconcile_* gauges of a process's /metrics (every process label stripped). */
async function reconcileGauges(opsUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^(orders_reconcile_[a-z_]+)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (match) values[match[1] as string] = Number(match[2]);
  }
  return values;
}

/**
 * Stores an order with `status` (parked: accepted and parked), created `ageMs` ago, with the venue
 * order id its acknowledgement gave (placed and later).
 */
async function storeOrder(
  env: Env,
  id: string,
  status: OrderStatus | "parked",
  ageMs = 60_000,
  venueOrderId: string | null = null,
) {
  const record = newOrderRecord(
    id,
    { type: "limit", side: "buy", instrument: "US0378331005", limitPriceCents: 10_000 as Cents, quantity: 5 },
    new Date(Date.now() - ageMs),
    { partitions: 1, dispatchGraceMs: 3_600_000, idempotencyKey: null, account: "reconcile" },
  );
  const { client, orders } = mongoFor(env);
  try {
    await orders.insertOne(
      status === "parked"
        ? { ...record, parked: true, parked_at: new Date(), last_error: "dead-lettered" }
        : { ...record, status, venue_order_id: venueOrderId },
    );
  } finally {
    await client.close();
  }
}

describe("orders reconcile", () => {
  test("reports each withdrawn, rejected or parked order the venue has, each placed one it lacks or knows under another id, and only those", async () => {
    const env = placementEnv(servers);
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 0 }, cleanup);
    const withVenue = { ...env, EXCHANGE_URL: venue.baseUrl };
    const exchange = createHttpExchange({ baseUrl: venue.baseUrl });
    const place = (id: string) =>
      exchange.placeOrder({
        client_order_id: id,
        type: "limit",
        side: "buy",
        instrument: "US0378331005",
        limit_price_cents: 10_000,
        quantity: 5,
      });

    const atVenue = {
      withdrawn: crypto.randomUUID(),
      rejected: crypto.randomUUID(),
      parked: crypto.randomUUID(),
      placed: crypto.randomUUID(),
      placedUnderOtherId: crypto.randomUUID(),
      filled: crypto.randomUUID(),
      oldWithdrawn: crypto.randomUUID(),
    };
    const acks = new Map<string, string>();
    for (const id of Object.values(atVenue)) acks.set(id, (await place(id)).venue_order_id);
    await storeOrder(env, atVenue.withdrawn, "withdrawn");
    await storeOrder(env, atVenue.rejected, "rejected");
    await storeOrder(env, atVenue.parked, "parked");
    await storeOrder(env, atVenue.placed, "placed", 60_000, acks.get(atVenue.placed));
    await storeOrder(env, atVenue.placedUnderOtherId, "placed", 60_000, "V-not-the-venues");
    await storeOrder(env, atVenue.filled, "filled", 60_000, acks.get(atVenue.filled));
    await storeOrder(env, atVenue.oldWithdrawn, "withdrawn", 3 * 3_600_000);
    for (const status of ["withdrawn", "rejected", "parked"] as const)
      await storeOrder(env, crypto.randomUUID(), status);
    // Placed in MongoDB, never at the venue; and filled, not at the venue either: only reports make
    // an order filled, so the filled one is not asked about.
    const placedMissing = crypto.randomUUID();
    await storeOrder(env, placedMissing, "placed", 60_000, "V-lost");
    await storeOrder(env, crypto.randomUUID(), "filled", 60_000, "V-filled");

    const run = await reconcile(withVenue, ["--hours", "1"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(1);
    const findings = run.lines.filter((line) => "finding" in line);
    expect(findings.map((line) => [line.order_id, line.status, line.venue_order_id]).sort()).toEqual(
      [
        [atVenue.withdrawn, "withdrawn", acks.get(atVenue.withdrawn)],
        [atVenue.rejected, "rejected", acks.get(atVenue.rejected)],
        [atVenue.parked, "parked", acks.get(atVenue.parked)],
        [atVenue.placedUnderOtherId, "placed", acks.get(atVenue.placedUnderOtherId)],
        [placedMissing, "placed", null],
      ].sort(),
    );
    const findingOf = (id: string) => String(findings.find((line) => line.order_id === id)?.finding);
    expect(findingOf(atVenue.withdrawn)).toContain("answered 500");
    expect(findingOf(placedMissing)).toContain("unknown to the venue");
    expect(findingOf(atVenue.placedUnderOtherId)).toContain(
      `the venue knows it as ${acks.get(atVenue.placedUnderOtherId)}, not V-not-the-venues`,
    );
    expect(run.lines.at(-1)).toMatchObject({
      checked: { withdrawn: 2, rejected: 2, parked: 2, placed: 3 },
      truncated: [],
      findings: 5,
      lookups_failed: 0,
    });
    const recorded = await lastReconciliation(env);
    expect(recorded).toMatchObject({ findings: 5, lookups_failed: 0, checked: { withdrawn: 2, placed: 3 } });
    expect([...(recorded?.finding_order_ids ?? [])].sort()).toEqual(
      [atVenue.withdrawn, atVenue.rejected, atVenue.parked, atVenue.placedUnderOtherId, placedMissing].sort(),
    );

    // The actors' end-to-end monitor exports it (its first pass comes 15 s after the start).
    const actors = await spawnActors(withVenue, cleanup);
    const gauges = await waitFor(
      async () => {
        const values = await reconcileGauges(actors.opsUrl);
        return values.orders_reconcile_findings === 5 ? values : null;
      },
      { timeoutMs: 40_000, intervalMs: 500, message: "the reconciliation gauges" },
    );
    expect(gauges.orders_reconcile_lookups_failed).toBe(0);
    expect(gauges.orders_reconcile_last_run_timestamp_seconds).toBe((recorded?.at.getTime() ?? 0) / 1000);
    await actors.process.kill();

    // With --limit 1 each kind is cut short, and the summary says so.
    const limited = await reconcile(withVenue, ["--hours", "1", "--limit", "1"]);
    expect(limited.lines.at(-1)).toMatchObject({
      checked: { withdrawn: 1, rejected: 1, parked: 1, placed: 1 },
      truncated: ["withdrawn", "rejected", "parked", "placed"],
    });

    // Over the last 4 hours the old withdrawn order is checked, and found, too.
    const wider = await reconcile(withVenue, ["--hours", "4"]);
    expect(wider.lines.at(-1)).toMatchObject({ checked: { withdrawn: 3 }, findings: 6 });

    // The venue gone: nothing can be checked, which is not "they agree".
    await venue.process.kill();
    const blind = await reconcile(withVenue, ["--hours", "1"]);
    expect(blind.code).toBe(3);
    expect(blind.lines.filter((line) => "error" in line)).toHaveLength(9);
    expect(blind.lines.at(-1)).toMatchObject({ findings: 0, lookups_failed: 9 });
    expect(await lastReconciliation(env)).toMatchObject({ findings: 0, lookups_failed: 9 });
  });

  test("exits 0 when the venue has none of them; 2 without a venue or with a bad argument", async () => {
    const env = placementEnv(servers);
    const venue = await spawnVenue(env, { failureRate: 0, latencyMs: 0 }, cleanup);
    await storeOrder(env, crypto.randomUUID(), "withdrawn");
    const clean = await reconcile({ ...env, EXCHANGE_URL: venue.baseUrl }, []);
    expect(clean.code).toBe(0);
    expect(clean.lines).toEqual([
      expect.objectContaining({ checked: { withdrawn: 1, rejected: 0, parked: 0, placed: 0 }, findings: 0 }),
    ]);

    const noVenue = await reconcile({ ...env, EXCHANGE_URL: "" }, []);
    expect(noVenue.code).toBe(2);
    expect(noVenue.stderr).toContain("EXCHANGE_URL is not set");
    const badArgument = await reconcile({ ...env, EXCHANGE_URL: venue.baseUrl }, ["--hours", "soon"]);
    expect(badArgument.code).toBe(2);
    expect(badArgument.stderr).toContain("usage: orders reconcile");
  });
});
