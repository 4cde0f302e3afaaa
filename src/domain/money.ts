/**
 * Money is exact: a price is an integer number of cents, never a binary float in storage. Every
 * MongoDB-wire server stores int64 (FerretDB has no Decimal128).
 */
export type Cents = number & { readonly __brand: "Cents" };

const DECIMAL = /^(0|[1-9]\d*)(\.\d{1,2})?$/;

export type PriceParse = { ok: true; cents: Cents } | { ok: false; reason: string };

/** Parses a price given as a JSON number or a decimal string into exact cents. */
export function parsePrice(input: number | string): PriceParse {
  const text = typeof input === "number" ? numberToPlainText(input) : input;
  if (text === null) return { ok: false, reason: "must be a finite number" };
  if (!DECIMAL.test(text)) {
    if (/^\d+\.\d{3,}$/.test(text) || /e-/i.test(text))
      return { ok: false, reason: "must have at most 2 decimal places" };
    if (/e\+/i.test(text)) return { ok: false, reason: "is too large" };
    return { ok: false, reason: 'must be a number or a decimal string such as "10.50"' };
  }
  const [whole = "0", fraction = ""] = text.split(".");
  const cents = Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
  if (!Number.isSafeInteger(cents) || !Number.isSafeInteger(Number(whole) * 100)) {
    return { ok: false, reason: "is too large" };
  }
  if (cents <= 0) return { ok: false, reason: "must be greater than 0" };
  return { ok: true, cents: cents as Cents };
}

/** Cents as the JSON number a client sees: 1999 -> 19.99 (the shortest decimal that round-trips). */
export function centsToNumber(cents: Cents): number {
  return cents / 100;
}

function numberToPlainText(value: number): string | null {
  if (!Number.isFinite(value)) return null;
  // JavaScript prints the shortest decimal that round-trips, so 19.99 prints "19.99" and 0.1 prints "0.1".
  return String(value);
}
