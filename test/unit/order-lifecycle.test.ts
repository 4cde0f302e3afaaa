import { describe, expect, test } from "bun:test";
import { compareIds } from "../../actors/runtime/stream-upkeep.ts";
import { canTransition, isPlacementFinal, ORDER_STATUSES, partitionOf } from "../../src/domain/order.ts";
import { backoffDelay } from "../../src/support/backoff.ts";

describe("order lifecycle", () => {
  test("transitions only move forward", () => {
    expect(canTransition("accepted", "placing")).toBe(true);
    expect(canTransition("placing", "placed")).toBe(true);
    expect(canTransition("placing", "rejected")).toBe(true);
    expect(canTransition("placed", "accepted")).toBe(false);
    expect(canTransition("placed", "placing")).toBe(false);
    expect(canTransition("rejected", "placing")).toBe(false);
    expect(canTransition("filled", "placed")).toBe(false);
    for (const status of ORDER_STATUSES) expect(canTransition("rejected", status)).toBe(false);
  });

  test("the exchange is never called for a final order", () => {
    expect(isPlacementFinal("accepted")).toBe(false);
    expect(isPlacementFinal("placing")).toBe(false);
    expect(isPlacementFinal("placed")).toBe(true);
    expect(isPlacementFinal("rejected")).toBe(true);
  });

  test("partitions are stable and spread", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[partitionOf(crypto.randomUUID(), 4)]! += 1;
    for (const count of counts) expect(count).toBeGreaterThan(800);
    expect(partitionOf("abc", 4)).toBe(partitionOf("abc", 4));
    expect(partitionOf("abc", 1)).toBe(0);
  });
});

describe("backoff", () => {
  const policy = { baseMs: 200, maxMs: 60_000 };
  test("doubles per attempt, with at least half the delay fixed (never a busy loop)", () => {
    expect(backoffDelay(1, policy, () => 0)).toBe(100);
    expect(backoffDelay(1, policy, () => 1)).toBe(200);
    expect(backoffDelay(4, policy, () => 0)).toBe(800);
    expect(backoffDelay(4, policy, () => 1)).toBe(1600);
  });
  test("is capped, however many attempts", () => {
    expect(backoffDelay(1_000, policy, () => 1)).toBe(60_000);
    expect(backoffDelay(1_000, policy, () => 0)).toBe(30_000);
  });
});

describe("stream ids", () => {
  test("compare numerically, not as text", () => {
    expect(compareIds("9-0", "10-0")).toBe(-1);
    expect(compareIds("10-2", "10-10")).toBe(-1);
    expect(compareIds("10-1", "10-1")).toBe(0);
  });
});
