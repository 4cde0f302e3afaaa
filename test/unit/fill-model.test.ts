import { describe, expect, test } from "bun:test";
import {
  execute,
  type FillSettings,
  planFills,
  referencePriceCents,
  splitEvenly,
  tradePriceCents,
} from "../../src/exchange/fill-model.ts";
import type { ExchangeOrder } from "../../src/exchange/port.ts";
import { seeded, sequence } from "../support/random.ts";

const settings = (overrides: Partial<FillSettings> = {}): FillSettings => ({
  fillsPerOrder: 2,
  fillDelayMs: 100,
  limitUnfilledRate: 0.2,
  ...overrides,
});

const market = (quantity: number): ExchangeOrder => ({
  client_order_id: "o-1",
  type: "market",
  side: "buy",
  instrument: "US0378331005",
  limit_price_cents: null,
  quantity,
});

const limit = (quantity: number, price = 1_050): ExchangeOrder => ({
  ...market(quantity),
  type: "limit",
  limit_price_cents: price,
});

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

describe("fill model", () => {
  test("the reference price is a stable function of the instrument within 1,000..100,000 cents", () => {
    const prices = ["US0378331005", "DE0007164600", "GB0002634946", "FR0000131104"].map(referencePriceCents);
    expect(prices).toEqual(
      ["US0378331005", "DE0007164600", "GB0002634946", "FR0000131104"].map(referencePriceCents),
    );
    for (const price of prices) {
      expect(Number.isInteger(price)).toBe(true);
      expect(price).toBeGreaterThanOrEqual(1_000);
      expect(price).toBeLessThanOrEqual(100_000);
    }
    expect(new Set(prices).size).toBe(prices.length);
  });

  test("splits a quantity into near-equal parts, the larger first", () => {
    expect(splitEvenly(5, 2)).toEqual([3, 2]);
    expect(splitEvenly(10, 3)).toEqual([4, 3, 3]);
    expect(splitEvenly(1, 1)).toEqual([1]);
    expect(splitEvenly(0, 2)).toEqual([]);
  });

  test("a market order fills in min(F, quantity) trades near the reference price, one delay apart", () => {
    const reference = referencePriceCents("US0378331005");
    const plan = planFills(market(5), settings({ fillsPerOrder: 2 }), sequence(0, 1));
    expect(plan).toEqual([
      { delayMs: 100, exec_type: "trade", qty: 3, price_cents: reference - 5 },
      { delayMs: 100, exec_type: "trade", qty: 2, price_cents: reference + 5 },
    ]);
    const single = planFills(market(1), settings({ fillsPerOrder: 3 }), sequence(0.5));
    expect(single).toEqual([{ delayMs: 100, exec_type: "trade", qty: 1, price_cents: reference }]);
  });

  test("fills_per_order 0 plans no report at all, whatever the order", () => {
    const none = sequence();
    expect(planFills(market(10), settings({ fillsPerOrder: 0 }), none)).toEqual([]);
    expect(planFills(limit(10), settings({ fillsPerOrder: 0, limitUnfilledRate: 1 }), none)).toEqual([]);
  });

  test("a limit order that fills trades every share at its limit price", () => {
    const plan = planFills(limit(10, 777), settings({ fillsPerOrder: 3 }), sequence(0.2));
    expect(plan.map((p) => [p.exec_type, p.qty, p.price_cents])).toEqual([
      ["trade", 4, 777],
      ["trade", 3, 777],
      ["trade", 3, 777],
    ]);
  });

  test("an unfilled limit order trades floor(quantity / 2), then ends cancelled or expired", () => {
    const cancelled = planFills(
      limit(7, 500),
      settings({ fillsPerOrder: 2, fillDelayMs: 5 }),
      sequence(0.1, 0.4),
    );
    expect(cancelled).toEqual([
      { delayMs: 5, exec_type: "trade", qty: 2, price_cents: 500 },
      { delayMs: 5, exec_type: "trade", qty: 1, price_cents: 500 },
      { delayMs: 5, exec_type: "cancelled", qty: 0, price_cents: null },
    ]);
    const expired = planFills(limit(1), settings(), sequence(0.1, 0.6));
    expect(expired).toEqual([{ delayMs: 100, exec_type: "expired", qty: 0, price_cents: null }]);
  });

  test("over many limit orders, the unfilled share and the cancel/expire split follow the settings", () => {
    const random = seeded(42);
    const counts = { full: 0, cancelled: 0, expired: 0 };
    for (let i = 0; i < 20_000; i++) {
      const plan = planFills(limit(100), settings({ limitUnfilledRate: 0.2 }), random);
      const end = plan.at(-1)!;
      if (end.exec_type === "trade") {
        counts.full++;
        expect(sum(plan.map((p) => p.qty))).toBe(100);
      } else {
        counts[end.exec_type]++;
        expect(sum(plan.map((p) => p.qty))).toBe(50);
      }
    }
    expect((counts.cancelled + counts.expired) / 20_000).toBeCloseTo(0.2, 1);
    expect(counts.cancelled / (counts.cancelled + counts.expired)).toBeCloseTo(0.5, 1);
  });

  test("market prices stay within a few cents of the reference price", () => {
    const random = seeded(7);
    const reference = referencePriceCents("DE0007164600");
    for (let i = 0; i < 1_000; i++) {
      const price = tradePriceCents(
        { type: "market", instrument: "DE0007164600", limit_price_cents: null },
        random,
      );
      expect(Math.abs(price - reference)).toBeLessThanOrEqual(5);
    }
  });

  test("execute never trades more than the open quantity and ends only an open order", () => {
    const trade = { exec_type: "trade" as const, qty: 5, price_cents: 100 };
    expect(execute({ cum_qty: 0, leaves_qty: 10 }, trade)).toEqual({
      exec_type: "trade",
      last_qty: 5,
      last_price_cents: 100,
      cum_qty: 5,
      leaves_qty: 5,
    });
    expect(execute({ cum_qty: 8, leaves_qty: 2 }, trade)).toMatchObject({
      last_qty: 2,
      cum_qty: 10,
      leaves_qty: 0,
    });
    expect(execute({ cum_qty: 10, leaves_qty: 0 }, trade)).toBeNull();
    const cancel = { exec_type: "cancelled" as const, qty: 0, price_cents: null };
    expect(execute({ cum_qty: 3, leaves_qty: 7 }, cancel)).toEqual({
      exec_type: "cancelled",
      last_qty: 0,
      last_price_cents: null,
      cum_qty: 3,
      leaves_qty: 0,
    });
    expect(execute({ cum_qty: 10, leaves_qty: 0 }, cancel)).toBeNull();
  });
});
