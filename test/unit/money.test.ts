import { describe, expect, test } from "bun:test";
import { centsToNumber, parsePrice } from "../../src/domain/money.ts";

describe("parsePrice", () => {
  test.each([
    [0.1, 10],
    [19.99, 1999],
    [1000000.01, 100000001],
    ["10.50", 1050],
    ["10.5", 1050],
    [10, 1000],
    ["0.01", 1],
    [0.29, 29],
    [1.005e2, 10050],
  ])("%p is exactly %p cents", (input, cents) => {
    expect(parsePrice(input)).toEqual({ ok: true, cents: cents as never });
  });

  test.each([
    [1.234, "must have at most 2 decimal places"],
    ["1.234", "must have at most 2 decimal places"],
    [1e-7, "must have at most 2 decimal places"],
    [0, "must be greater than 0"],
    ["0.00", "must be greater than 0"],
    [-1, 'must be a number or a decimal string such as "10.50"'],
    ["abc", 'must be a number or a decimal string such as "10.50"'],
    [" 10", 'must be a number or a decimal string such as "10.50"'],
    ["1e3", 'must be a number or a decimal string such as "10.50"'],
    [1e21, "is too large"],
    ["90071992547409.92", "is too large"],
    [Number.NaN, "must be a finite number"],
    [Number.POSITIVE_INFINITY, "must be a finite number"],
  ])("%p is refused: %s", (input, reason) => {
    expect(parsePrice(input)).toEqual({ ok: false, reason });
  });

  test("cents come back as the shortest decimal number", () => {
    for (const [cents, shown] of [
      [10, "0.1"],
      [1999, "19.99"],
      [100000001, "1000000.01"],
    ] as const) {
      expect(JSON.stringify(centsToNumber(cents as never))).toBe(shown);
    }
  });
});
