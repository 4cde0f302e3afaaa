/**
 * Fuzzed POST /orders requests and what docs/CONTRACT.md says each must get, for
 * test/integration/fuzz.test.ts and bench/fuzz.ts. A case is a body generated from the OrderRequest schema
 * (src/orders/model.ts), valid or mutated (wrong types, missing and unknown fields, bad prices, unicode,
 * huge numbers, nested junk, not JSON, not UTF-8, another media type, too large), with an Idempotency-Key
 * header that is absent, valid (often from a small pool, so keys are reused) or malformed; and pairs of
 * requests: a client's retry (one order, one key, two JSON forms) and a key reused for another order.
 *
 * `FuzzOracle` judges the answers. In order (`sequential: true`) it knows what each key was first used
 * for, so a reuse must be a replay of the same order or a 422; concurrently it accepts the answers any
 * interleaving may give (a 409 while the key's first request is in flight). It collects the orders each
 * 201 created and the X-Order-Id of each 5xx, which the caller compares with what MongoDB holds.
 */
import fc from "fast-check";
import { MAX_BODY_BYTES, MAX_QUANTITY } from "../../src/orders/model.ts";

export const ORDER_FIELDS = ["type", "side", "instrument", "limit_price", "quantity"] as const;
const REQUIRED_FIELDS = ["type", "side", "instrument", "quantity"] as const;
/** docs/CONTRACT.md: 1-255 printable ASCII characters. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/** The decimal strings the contract accepts as a price (the schema's pattern). */
const DECIMAL = /^(0|[1-9]\d*)(\.\d{1,2})?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** An order as the contract normalises it: the price in cents (`"10.5"` and `10.50` are one order). */
export interface Order {
  type: "market" | "limit";
  side: "buy" | "sell";
  instrument: string;
  cents: number | null;
  quantity: number;
}

/** JSON text written as is: numbers JSON.stringify cannot produce (`1e400`, `-0`, `1050e-2`). */
class RawJson {
  constructor(readonly text: string) {}
}
type Json = null | boolean | number | string | RawJson | Json[] | { [key: string]: Json };

/** What the contract says about a body on its own; the Idempotency-Key is judged with it. */
export type BodyVerdict =
  | { kind: "valid"; order: Order }
  /**
   * Refused with `status`, naming every field of `fields` and perhaps those of `maybe` (the price rule
   * is not applied while the order type itself is bad). `stage: "parse"`: refused while reading the
   * body, before the headers are validated, so even a malformed Idempotency-Key does not change it.
   */
  | {
      kind: "invalid";
      status: 413 | 415 | 422;
      fields: string[];
      maybe: string[];
      stage: "parse" | "schema";
    };

export interface FuzzCase {
  /** The kind of body and header, for counts and reports (e.g. `bad-value:limit_price+key:invalid`). */
  label: string;
  body: string | Uint8Array;
  /** null: no content-type header at all. */
  contentType: string | null;
  /** The Idempotency-Key header as sent (null: none); Headers trims it, the oracle judges the trimmed value. */
  idempotencyKey: string | null;
  verdict: BodyVerdict;
}

// ---- JSON text ----

function toJsonText(value: Json, indent = 0): string {
  const raws: string[] = [];
  const text = JSON.stringify(
    value,
    (_key, item: unknown) => (item instanceof RawJson ? `\u0000raw${raws.push(item.text) - 1}\u0000` : item),
    indent || undefined,
  );
  return text.replace(/"\\u0000raw(\d+)\\u0000"/g, (_match, index: string) => raws[Number(index)] ?? "");
}

/** Sets a key as an own property, `__proto__` included (plain assignment would set the prototype). */
function withKey(object: Record<string, Json>, key: string, value: Json): Record<string, Json> {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  return object;
}

// ---- valid orders ----

const orderType = fc.constantFrom("market" as const, "limit" as const);
const orderSide = fc.constantFrom("buy" as const, "sell" as const);
const isinLike = fc.stringMatching(/^[A-Z]{2}[A-Z0-9]{9}[0-9]$/);
/** The contract's instrument: 12 letters and digits (src/orders/model.ts). */
const ISIN_CHARACTERS = /^[A-Za-z0-9]{12}$/;
const positiveSafe = fc.maxSafeNat().filter((n) => n > 0);

/** A small domain, so that two requests with one key often carry the same order (a replay). */
const frequentOrder = fc
  .record({
    type: orderType,
    side: orderSide,
    instrument: fc.constantFrom("US0378331005", "DE0007164600"),
    cents: fc.constantFrom(1050, 1, 1999),
    quantity: fc.constantFrom(1, 2),
  })
  .map((o): Order => (o.type === "market" ? { ...o, cents: null } : o));

const anyOrder = fc
  .record({
    type: orderType,
    side: orderSide,
    instrument: isinLike,
    cents: fc.oneof(
      fc.integer({ min: 1, max: 10_000_000 }),
      positiveSafe,
      fc.constant(Number.MAX_SAFE_INTEGER),
    ),
    quantity: fc.oneof(fc.integer({ min: 1, max: 1_000_000 }), positiveSafe, fc.constant(MAX_QUANTITY)),
  })
  .map((o): Order => (o.type === "market" ? { ...o, cents: null } : o));

const validOrder = fc.oneof({ arbitrary: frequentOrder, weight: 2 }, { arbitrary: anyOrder, weight: 3 });

/** The JSON forms of a price the contract accepts: a number (exact below 10^13 cents) or a decimal string. */
function priceForms(cents: number): fc.Arbitrary<Json> {
  const whole = Math.floor(cents / 100);
  const fraction = cents % 100;
  const twoDecimals = `${whole}.${String(fraction).padStart(2, "0")}`;
  const shortest =
    fraction === 0 ? String(whole) : fraction % 10 === 0 ? `${whole}.${fraction / 10}` : twoDecimals;
  const forms: fc.Arbitrary<Json>[] = [fc.constant(twoDecimals), fc.constant(shortest)];
  if (cents <= 10 ** 13) forms.push(fc.constant(cents / 100), fc.constant(new RawJson(`${cents}e-2`)));
  return fc.oneof(...forms);
}

/** An order as a JSON object in one of its accepted forms (price form, null or absent price for market). */
function orderObject(order: Order): fc.Arbitrary<Record<string, Json>> {
  const base = { type: order.type, side: order.side, instrument: order.instrument, quantity: order.quantity };
  if (order.cents === null) {
    return fc.constantFrom<Record<string, Json>>(base, { ...base, limit_price: null });
  }
  return priceForms(order.cents).map((price) => ({ ...base, limit_price: price }));
}

// ---- junk ----

const nestedJunk: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json>;
const notAString: fc.Arbitrary<Json> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(nestedJunk, { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), nestedJunk, { maxKeys: 4 }),
);
const notANumber: fc.Arbitrary<Json> = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.nat().map(String),
  fc.boolean(),
  fc.constant(null),
  fc.array(nestedJunk, { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), nestedJunk, { maxKeys: 4 }),
);

const badQuantity: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(
    0,
    -1,
    1.5,
    2 ** 53,
    1e300,
    new RawJson("1e400"),
    new RawJson("-1e400"),
    new RawJson("-0"),
    new RawJson("0.0"),
    new RawJson("1e-400"),
    new RawJson("123456789012345678901234567890"),
  ),
  fc.integer({ min: -1_000_000, max: 0 }),
  fc.double({ min: 0.001, max: 1e6, noNaN: true }).filter((d) => !Number.isInteger(d)),
);

/** Prices no limit order may have (`schemaValidPrice` tells which the schema alone lets through). */
const badLimitPrice: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(
    0,
    -1,
    "0",
    "0.00",
    "-1",
    "1.234",
    1.234,
    "abc",
    "",
    " 10",
    "10.",
    ".5",
    "01.5",
    "1e3",
    "10,50",
    "\uff11\uff10",
    "NaN",
    "Infinity",
    1e21,
    1e-7,
    "99999999999999999999.99",
    new RawJson("1e400"),
    new RawJson("-0"),
    new RawJson("1e-400"),
    true,
  ),
  fc.integer({ min: -1_000_000, max: 0 }),
  // Three or more decimals, the last not 0: refused, never rounded.
  fc
    .tuple(fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 1, max: 999 }))
    .map(([whole, fraction]) => `${whole}.${String(fraction).padStart(3, "0")}`)
    .chain((text) => fc.constantFrom<Json>(text, Number(text))),
  fc.array(nestedJunk, { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), nestedJunk, { maxKeys: 3 }),
);

function schemaValidPrice(value: Json): boolean {
  const parsed: unknown = value instanceof RawJson ? JSON.parse(value.text) : value;
  if (parsed === null) return true;
  if (typeof parsed === "number") return Number.isFinite(parsed) && parsed > 0;
  return typeof parsed === "string" && DECIMAL.test(parsed);
}

const unknownFieldName = fc.oneof(
  fc.constantFrom(
    "__proto__",
    "constructor",
    "toString",
    "prototype",
    "Type",
    "limit-price",
    "limitPrice",
    "id",
    "status",
    "account",
    "$where",
    "type ",
    "a.b",
    "a/b",
    "x~y",
    "",
    "\u00e9",
  ),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 16 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 16 }),
);

// ---- mutations of a valid order ----

interface Mutated {
  label: string;
  object: Record<string, Json>;
}

/** A mutated body and the fields its 422 must name (`maybe`: may name). */
interface Settled extends Mutated {
  fields: string[];
  maybe: string[];
}

type Mutation = (object: Record<string, Json>, order: Order) => fc.Arbitrary<Mutated>;

const mutations: Mutation[] = [
  // A required field missing (the price too, for a limit order).
  (object, order) =>
    fc
      .constantFrom(...REQUIRED_FIELDS, ...(order.type === "limit" ? (["limit_price"] as const) : []))
      .map((field) => {
        const { [field]: _removed, ...rest } = object;
        return { label: `missing:${field}`, object: rest };
      }),
  // A value of the wrong JSON type, nested junk included.
  (object, order) =>
    fc.constantFrom(...ORDER_FIELDS).chain((field) => {
      const junk =
        field === "quantity"
          ? notANumber
          : field === "limit_price"
            ? order.type === "limit"
              ? fc.oneof(
                  fc.boolean(),
                  fc.array(nestedJunk, { maxLength: 3 }),
                  fc.dictionary(fc.string(), nestedJunk),
                )
              : notAString.filter((value) => value !== null)
            : notAString;
      return junk.map((value) => ({ label: `wrong-type:${field}`, object: { ...object, [field]: value } }));
    }),
  // A value of the right type that the contract refuses.
  (object, order) =>
    fc.constantFrom(...ORDER_FIELDS).chain((field): fc.Arbitrary<Mutated> => {
      const refused = (values: fc.Arbitrary<Json>) =>
        values.map((value) => ({ label: `bad-value:${field}`, object: { ...object, [field]: value } }));
      switch (field) {
        case "type":
          return refused(fc.constantFrom("stop", "MARKET", "Limit", "", "market ", "limit\u0000"));
        case "side":
          return refused(
            fc.oneof(fc.constantFrom("short", "BUY", "", "sell "), fc.string({ unit: "grapheme" })),
          ).filter((m) => m.object.side !== "buy" && m.object.side !== "sell");
        case "instrument":
          return refused(
            fc.oneof(
              fc.string({ maxLength: 11 }),
              fc.string({ minLength: 13, maxLength: 40 }),
              fc.constant("x".repeat(5_000)),
            ),
          );
        case "quantity":
          return refused(badQuantity);
        case "limit_price":
          return order.type === "limit"
            ? refused(badLimitPrice)
            : // A market order carries no price.
              refused(fc.oneof(priceForms(1050), badLimitPrice));
      }
    }),
  // An unknown field (never silently dropped).
  (object) =>
    fc
      .tuple(unknownFieldName, nestedJunk)
      .filter(([name]) => !(ORDER_FIELDS as readonly string[]).includes(name))
      .map(([name, value]) => ({ label: "unknown-field", object: withKey({ ...object }, name, value) })),
];

/** One to three mutations (a later one may change a field again); every bad field must be named at once. */
function mutatedOrder(): fc.Arbitrary<Settled> {
  return fc.tuple(validOrder, fc.integer({ min: 1, max: 3 })).chain(([order, count]) =>
    orderObject(order).chain((object) => {
      let current: fc.Arbitrary<Mutated> = fc.constant({ label: "", object });
      for (let i = 0; i < count; i++) {
        current = current.chain((so) =>
          fc
            .constantFrom(...mutations)
            .chain((mutation) => mutation(so.object, order))
            .map((next) => ({
              label: so.label ? `${so.label},${next.label}` : next.label,
              object: next.object,
            })),
        );
      }
      return current.map(settle);
    }),
  );
}

/**
 * The fields a mutated body must name. A later mutation of a field wins over an earlier one; a valid
 * value left in place is no fault. While `type` is bad the price rule is not applied, so a price that
 * only the rule refuses may or may not be named.
 */
function settle(mutated: Mutated): Settled {
  const object = mutated.object;
  const faults = new Set<string>();
  const own = (key: string) => Object.hasOwn(object, key);
  const typeValue = object.type;
  const typeOk = typeValue === "market" || typeValue === "limit";
  if (!typeOk) faults.add("type");
  if (!(own("side") && (object.side === "buy" || object.side === "sell"))) faults.add("side");
  const instrument = object.instrument;
  if (!(typeof instrument === "string" && ISIN_CHARACTERS.test(instrument))) faults.add("instrument");
  const quantity = object.quantity instanceof RawJson ? JSON.parse(object.quantity.text) : object.quantity;
  if (!(typeof quantity === "number" && Number.isSafeInteger(quantity) && quantity > 0))
    faults.add("quantity");
  for (const key of Object.keys(object)) {
    if (!(ORDER_FIELDS as readonly string[]).includes(key)) faults.add(key);
  }
  const maybe: string[] = [];
  const price = own("limit_price") ? (object.limit_price as Json) : undefined;
  const priceFault = priceFaultOf(typeValue, price);
  if (priceFault === "schema") faults.add("limit_price");
  else if (priceFault === "rule") {
    if (typeOk) faults.add("limit_price");
    else maybe.push("limit_price");
  }
  return { ...mutated, fields: [...faults], maybe };
}

/** Why a price is refused: by the schema, by the price rule (market vs limit, cents), or not at all. */
function priceFaultOf(type: Json | undefined, price: Json | undefined): "schema" | "rule" | null {
  if (price !== undefined && !schemaValidPrice(price)) return "schema";
  const absent = price === undefined || price === null;
  if (type === "market") return absent ? null : "rule";
  if (type !== "limit") return absent ? null : priceCents(price) === null ? "rule" : null;
  if (absent) return "rule";
  return priceCents(price) === null ? "rule" : null;
}

/** The cents of a price the contract accepts, else null (the oracle's own reading of docs/CONTRACT.md). */
function priceCents(price: Json): number | null {
  const parsed: unknown = price instanceof RawJson ? JSON.parse(price.text) : price;
  let text: string;
  if (typeof parsed === "number") {
    if (!Number.isFinite(parsed)) return null;
    text = String(parsed);
  } else if (typeof parsed === "string") {
    text = parsed;
  } else {
    return null;
  }
  if (!DECIMAL.test(text)) return null;
  const [whole = "0", fraction = ""] = text.split(".");
  const cents = Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
  return Number.isSafeInteger(cents) && Number.isSafeInteger(Number(whole) * 100) && cents > 0 ? cents : null;
}

// ---- whole bodies ----

const JSON_MEDIA_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "Application/JSON",
  "application/vnd.orders+json",
];
const OTHER_MEDIA_TYPES = [
  "text/plain",
  "text/plain;charset=UTF-8",
  "application/xml",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/jsonx",
  "json",
  "",
];

interface BodyCase {
  label: string;
  body: string | Uint8Array;
  contentType: string | null;
  verdict: BodyVerdict;
}

const jsonMediaType = fc.constantFrom(...JSON_MEDIA_TYPES);

function asText(object: Record<string, Json>): fc.Arbitrary<string> {
  const keys = Object.keys(object);
  return fc
    .tuple(
      fc.shuffledSubarray(keys, { minLength: keys.length, maxLength: keys.length }),
      fc.constantFrom(0, 0, 2),
    )
    .map(([order, indent]) => {
      const shuffled: Record<string, Json> = {};
      for (const key of order) withKey(shuffled, key, object[key] as Json);
      return toJsonText(shuffled, indent);
    });
}

/** The order in one of its accepted JSON forms (price form, key order, layout, media type). */
const bodyOfOrder = (order: Order, label = "valid"): fc.Arbitrary<BodyCase> =>
  orderObject(order)
    .chain(asText)
    .chain((body) =>
      jsonMediaType.map((contentType) => ({
        label,
        body,
        contentType,
        verdict: { kind: "valid" as const, order },
      })),
    );

const validBody: fc.Arbitrary<BodyCase> = validOrder.chain((order) => bodyOfOrder(order));

const invalidBody: fc.Arbitrary<BodyCase> = mutatedOrder()
  .filter((m) => m.fields.length > 0)
  .chain((m) =>
    fc.tuple(asText(m.object), jsonMediaType).map(([body, contentType]) => ({
      label: m.label,
      body,
      contentType,
      verdict: { kind: "invalid", status: 422, fields: m.fields, maybe: m.maybe, stage: "schema" },
    })),
  );

/** Instruments of unicode, control characters and lone surrogates, 12 UTF-16 code units or 12 code points. */
const unicodeInstrumentBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    validOrder,
    fc.array(
      fc.oneof(
        fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
        fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }),
        fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)),
        fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
      ),
      { minLength: 12, maxLength: 12 },
    ),
    fc.boolean(),
  )
  .chain(([order, units, byCodeUnits]) => {
    const joined = units.join("");
    const instrument = byCodeUnits ? joined.slice(0, 12) : [...joined].slice(0, 12).join("");
    const withInstrument = { ...order, instrument };
    return fc.tuple(orderObject(withInstrument).chain(asText), jsonMediaType).map(([body, contentType]) => {
      // Control characters, surrogates and other unicode are not letters and digits: 422, whatever length.
      const verdict: BodyVerdict = ISIN_CHARACTERS.test(instrument)
        ? { kind: "valid", order: withInstrument }
        : { kind: "invalid", status: 422, fields: ["instrument"], maybe: [], stage: "schema" };
      return { label: "unicode-instrument", body, contentType, verdict };
    });
  });

const notObjectBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== "object" || v === null || Array.isArray(v)),
    ),
    jsonMediaType,
  )
  .map(([value, contentType]) => ({
    label: "not-an-object",
    body: JSON.stringify(value),
    contentType,
    verdict: { kind: "invalid", status: 422, fields: ["body"], maybe: [], stage: "schema" },
  }));

/** An object of unknown fields only: each is named, and so is every missing required field. */
const junkObjectBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    fc.uniqueArray(fc.tuple(unknownFieldName, nestedJunk), { selector: ([k]) => k, maxLength: 5 }),
    jsonMediaType,
  )
  .map(([entries, contentType]) => {
    const object: Record<string, Json> = {};
    for (const [key, value] of entries) {
      if (!(ORDER_FIELDS as readonly string[]).includes(key)) withKey(object, key, value);
    }
    const fields = [...Object.keys(object), ...REQUIRED_FIELDS];
    return {
      label: "junk-object",
      body: toJsonText(object),
      contentType,
      verdict: { kind: "invalid", status: 422, fields, maybe: [], stage: "schema" },
    };
  });

const notJson = (label: string, body: string | Uint8Array, contentType: string): BodyCase => ({
  label,
  body,
  contentType,
  verdict: { kind: "invalid", status: 422, fields: ["body"], maybe: [], stage: "parse" },
});

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const notJsonBody: fc.Arbitrary<BodyCase> = fc.oneof(
  fc
    .tuple(
      fc.string({ maxLength: 60 }).filter((s) => !parses(s)),
      jsonMediaType,
    )
    .map(([s, ct]) => notJson("not-json", s, ct)),
  // A valid order cut short.
  fc
    .tuple(validOrder.chain(orderObject).chain(asText), fc.nat())
    .map(([text, at]) => text.slice(0, at % text.length))
    .filter((s) => !parses(s))
    .map((s) => notJson("truncated-json", s, "application/json")),
  // A valid order with a byte that is no UTF-8 inside a string.
  fc
    .tuple(
      validOrder.chain(orderObject).chain(asText),
      fc.constantFrom(0xff, 0xc3, 0x80, 0xed),
      jsonMediaType,
    )
    .map(([text, byte, ct]) => {
      const bytes = new TextEncoder().encode(text);
      const at = text.indexOf('"', text.indexOf('"instrument"') + 13) + 1;
      return notJson("bad-utf8", new Uint8Array([...bytes.subarray(0, at), byte, ...bytes.subarray(at)]), ct);
    }),
);

const wrongMediaTypeBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    validOrder.chain(orderObject).chain(asText),
    fc.option(fc.constantFrom(...OTHER_MEDIA_TYPES), { nil: null }),
  )
  .map(([text, contentType]) => ({
    label: "media-type",
    // Without a content-type header the body must not be a string (Request would add text/plain).
    body: contentType === null ? new TextEncoder().encode(text) : text,
    contentType,
    verdict: { kind: "invalid", status: 415, fields: ["content-type"], maybe: [], stage: "parse" },
  }));

/** Whitespace around a valid order up to a size near the limit: accepted up to MAX_BODY_BYTES, 413 above. */
const sizedBody: fc.Arbitrary<BodyCase> = fc
  .tuple(
    validOrder,
    fc.oneof(
      fc.integer({ min: MAX_BODY_BYTES - 8, max: MAX_BODY_BYTES + 8 }),
      fc.integer({ min: MAX_BODY_BYTES + 9, max: 64 * 1024 }),
    ),
    fc.boolean(),
  )
  .chain(([order, size, leading]) =>
    orderObject(order)
      .map((object) => toJsonText(object))
      .map((text) => {
        const bytes = new TextEncoder().encode(text).length;
        const padding = " ".repeat(Math.max(0, size - bytes));
        const body = leading ? padding + text : text + padding;
        const length = new TextEncoder().encode(body).length;
        const verdict: BodyVerdict =
          length <= MAX_BODY_BYTES
            ? { kind: "valid", order }
            : { kind: "invalid", status: 413, fields: ["body"], maybe: [], stage: "parse" };
        return {
          label: length <= MAX_BODY_BYTES ? "size-at-limit" : "too-large",
          body,
          contentType: "application/json",
          verdict,
        };
      }),
  );

export const fuzzBody: fc.Arbitrary<BodyCase> = fc.oneof(
  { arbitrary: validBody, weight: 8 },
  { arbitrary: invalidBody, weight: 10 },
  { arbitrary: unicodeInstrumentBody, weight: 2 },
  { arbitrary: notObjectBody, weight: 1 },
  { arbitrary: junkObjectBody, weight: 1 },
  { arbitrary: notJsonBody, weight: 2 },
  { arbitrary: wrongMediaTypeBody, weight: 1 },
  { arbitrary: sizedBody, weight: 1 },
);

// ---- Idempotency-Key headers ----

const KEY_POOL = ["key-1", "key-2", "key-3", "key-4", "key-5", "key-6"];

/** A header value that Headers accepts (no NUL, CR or LF), or null for a value it would throw on. */
function sendable(value: string): boolean {
  try {
    new Headers({ "idempotency-key": value });
    return true;
  } catch {
    return false;
  }
}

export const idempotencyKeyHeader: fc.Arbitrary<{ label: string; value: string | null }> = fc.oneof(
  { arbitrary: fc.constant({ label: "", value: null }), weight: 4 },
  { arbitrary: fc.constantFrom(...KEY_POOL).map((value) => ({ label: "+key:pool", value })), weight: 4 },
  {
    arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,64}$/).map((value) => ({ label: "+key:random", value })),
    weight: 1,
  },
  {
    arbitrary: fc.constantFrom(...KEY_POOL).map((value) => ({ label: "+key:padded", value: ` ${value}\t` })),
    weight: 1,
  },
  {
    arbitrary: fc
      .oneof(
        fc.constantFrom("", " ", "a b", "x".repeat(256), "\u00e9t\u00e9", "k\u007f", "tab\there"),
        fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 20 }),
      )
      .filter(sendable)
      .map((value) => ({ label: "+key:odd", value })),
    weight: 1,
  },
);

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .tuple(fuzzBody, idempotencyKeyHeader)
  .map(([body, key]) => ({ ...body, label: `${body.label}${key.label}`, idempotencyKey: key.value }));

/** A key no other case uses (64 random printable characters): its first request creates the order. */
const freshKey = fc.stringMatching(/^[\x21-\x7e]{64}$/);

/**
 * The requests to send, in order: mostly one case; sometimes a client's retry (one order twice with
 * one fresh key, in two JSON forms: the second must be a replay of the first) or a key reused for
 * another order (the second must be a 422 naming Idempotency-Key).
 */
export const fuzzRequests: fc.Arbitrary<FuzzCase[]> = fc.oneof(
  { arbitrary: fuzzCase.map((one) => [one]), weight: 16 },
  {
    arbitrary: fc
      .tuple(validOrder, freshKey, fc.boolean())
      .chain(([order, key, padded]) =>
        fc.tuple(
          bodyOfOrder(order, "retry"),
          bodyOfOrder(order, "retry"),
          fc.constant(key),
          fc.constant(padded),
        ),
      )
      .map(([first, second, key, padded]) => [
        { ...first, idempotencyKey: key },
        // Headers trims the value: the same key.
        { ...second, idempotencyKey: padded ? ` ${key} ` : key },
      ]),
    weight: 1,
  },
  {
    arbitrary: fc
      .tuple(validOrder, validOrder, freshKey)
      .filter(([a, b]) => JSON.stringify(a) !== JSON.stringify(b))
      .chain(([a, b, key]) =>
        fc.tuple(bodyOfOrder(a, "key-reuse"), bodyOfOrder(b, "key-reuse"), fc.constant(key)),
      )
      .map(([first, second, key]) => [
        { ...first, idempotencyKey: key },
        { ...second, idempotencyKey: key },
      ]),
    weight: 1,
  },
);

/** `count` requests of `fuzzRequests`, reproducible from `seed`. */
export function sampleRequests(count: number, seed: number): FuzzCase[] {
  const requests: FuzzCase[] = [];
  for (const group of fc.sample(fuzzRequests, { numRuns: count, seed })) {
    requests.push(...group);
    if (requests.length >= count) break;
  }
  return requests.slice(0, count);
}

/** The request of a case: POST /orders with the given extra headers (the key's Authorization). */
export function requestOf(c: FuzzCase, headers: Record<string, string>, base = "http://localhost"): Request {
  const all = new Headers(headers);
  if (c.contentType !== null) all.set("content-type", c.contentType);
  if (c.idempotencyKey !== null) all.set("idempotency-key", c.idempotencyKey);
  return new Request(`${base}/orders`, { method: "POST", headers: all, body: c.body });
}

// ---- the oracle ----

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export interface Violation {
  /** The rule broken, e.g. `5xx` or `422 does not name a bad field`. */
  rule: string;
  label: string;
  fuzzCase: FuzzCase;
  status: number;
  /** What was wrong (e.g. `{missing, named}`), as data. */
  data: unknown;
  /** The request, the answer and `data` as one line of JSON, for reports. */
  detail: string;
}

const orderHash = (order: Order) =>
  JSON.stringify([order.type, order.side, order.instrument, order.cents, order.quantity]);

export class FuzzOracle {
  /** The first order of every key that got a 201 (sequential runs only). */
  private readonly keys = new Map<string, { hash: string; id: string | null }>();
  /** The orders created (201 without Idempotent-Replayed), by id. */
  readonly created = new Map<string, Order>();
  /** The X-Order-Id of every 5xx: "maybe stored" (docs/CONTRACT.md), withdrawn or replayable, never refused. */
  readonly maybeStored = new Set<string>();
  readonly statuses = new Map<number, number>();
  replayed = 0;

  constructor(private readonly options: { sequential: boolean }) {}

  /** The contract's verdict on one answer; empty when it is what docs/CONTRACT.md says. */
  judge(c: FuzzCase, answer: Answer): Violation[] {
    this.statuses.set(answer.status, (this.statuses.get(answer.status) ?? 0) + 1);
    const found: Violation[] = [];
    const fail = (rule: string, data: unknown) =>
      found.push({
        rule,
        label: c.label,
        fuzzCase: c,
        status: answer.status,
        data,
        detail: describeCase(c, answer, data),
      });
    const { status, headers, body } = answer;
    if (status >= 500) {
      fail("5xx", body);
      const orderId = headers.get("x-order-id");
      if (orderId) this.maybeStored.add(orderId);
      // A 500 means "maybe stored" (docs/CONTRACT.md): the key stays bound to this order, whose id the
      // client does not know; a retry with it is answered the order, new or replayed.
      const key = effectiveKey(c.idempotencyKey);
      if (this.options.sequential && key.valid && c.verdict.kind !== "invalid" && !this.keys.has(key.value)) {
        this.keys.set(key.value, { hash: orderHash(c.verdict.order), id: null });
      }
      return found;
    }
    if (!headers.get("x-request-id")) fail("no x-request-id", null);
    if (status !== 201 && (headers.has("location") || headers.has("x-order-id"))) {
      fail("a refused request names an order", Object.fromEntries(headers));
    }
    const key = effectiveKey(c.idempotencyKey);
    const verdict = c.verdict;

    const expectRefusal = (expected: number, fields: string[], maybe: string[], exact: boolean) => {
      if (status !== expected) return fail(`expected ${expected}`, body);
      const named = fieldErrorsOf(body);
      if (named === null) return fail(`${status} without the documented body`, body);
      const missing = fields.filter((field) => !named.includes(field));
      const extra = named.filter((field) => !fields.includes(field) && !maybe.includes(field));
      if (missing.length > 0) fail(`${status} does not name a bad field`, { missing, named });
      if (exact && extra.length > 0) fail(`${status} names a field that is not at fault`, { extra, named });
    };

    if (verdict.kind === "invalid" && verdict.stage === "parse") {
      expectRefusal(verdict.status, verdict.fields, [], true);
      return found;
    }
    if (key.present && !key.valid) {
      // Headers are validated before the body: the key must be named; the body's faults may be too.
      const bodyFields = verdict.kind === "invalid" ? [...verdict.fields, ...verdict.maybe] : [];
      expectRefusal(422, ["Idempotency-Key"], bodyFields, true);
      return found;
    }
    if (verdict.kind === "invalid") {
      expectRefusal(verdict.status, verdict.fields, verdict.maybe, true);
      return found;
    }
    this.judgeOrder(verdict.order, key, answer, fail, expectRefusal);
    return found;
  }

  private judgeOrder(
    order: Order,
    key: ReturnType<typeof effectiveKey>,
    answer: Answer,
    fail: (rule: string, detail: unknown) => void,
    expectRefusal: (expected: number, fields: string[], maybe: string[], exact: boolean) => void,
  ): void {
    const { status, headers, body } = answer;
    const hash = orderHash(order);
    const prior = key.valid ? this.keys.get(key.value) : undefined;
    if (!this.options.sequential && key.valid) {
      // Any interleaving: the key's first order may be in flight (409) or another order (422).
      if (status === 409) return;
      if (status === 422) {
        expectRefusal(422, ["Idempotency-Key"], [], true);
        return;
      }
    } else if (prior && prior.hash !== hash) {
      expectRefusal(422, ["Idempotency-Key"], [], true);
      return;
    }
    if (status !== 201) {
      fail("a valid order is not accepted", body);
      return;
    }
    const replayed = headers.get("idempotent-replayed") === "true";
    const answered = body as Record<string, unknown>;
    const id = String(answered?.id);
    const expected = {
      id,
      created_at: answered?.created_at,
      type: order.type,
      side: order.side,
      instrument: order.instrument,
      limit_price: order.cents === null ? null : order.cents / 100,
      quantity: order.quantity,
      status: "accepted",
    };
    if (!UUID.test(id) || typeof answered.created_at !== "string")
      fail("201 body has no UUIDv7 id or created_at", body);
    if (!sameJson(answered, expected)) fail("201 body is not the order sent", { expected, answered });
    if (headers.get("location") !== `/orders/${id}`)
      fail("201 without its Location", headers.get("location"));
    if (this.options.sequential) {
      if (prior?.id && (!replayed || prior.id !== id))
        fail("a retry with the key is not a replay of its order", { prior, id, replayed });
      if (!prior && replayed) fail("a replay without an earlier order", { id });
    }
    if (replayed) {
      if (!key.valid) fail("a replay without an Idempotency-Key", { id });
      if (prior && prior.id === null) {
        // The order of an earlier 500 had been stored after all: counted as created, once.
        this.created.set(id, order);
        this.keys.set(key.value, { hash, id });
      } else {
        this.replayed += 1;
      }
      return;
    }
    if (this.created.has(id)) fail("two new orders with one id", { id });
    this.created.set(id, order);
    if (key.valid && this.options.sequential) this.keys.set(key.value, { hash, id });
  }
}

/** The Idempotency-Key as the server sees it (Headers trims it) and whether the contract accepts it. */
export function effectiveKey(raw: string | null): { present: boolean; valid: boolean; value: string } {
  if (raw === null) return { present: false, valid: false, value: "" };
  const value = new Headers({ "idempotency-key": raw }).get("idempotency-key") ?? "";
  return { present: true, valid: IDEMPOTENCY_KEY.test(value), value };
}

/** The fields of the documented error body `{message, errors: [{field, message}]}`, or null for another shape. */
export function fieldErrorsOf(body: unknown): string[] | null {
  if (typeof body !== "object" || body === null) return null;
  const { message, errors, ...rest } = body as Record<string, unknown>;
  if (typeof message !== "string" || !Array.isArray(errors) || errors.length === 0) return null;
  if (Object.keys(rest).length > 0) return null;
  const fields: string[] = [];
  for (const error of errors) {
    const { field, message: words } = (error ?? {}) as Record<string, unknown>;
    if (typeof field !== "string" || typeof words !== "string" || words.length === 0) return null;
    fields.push(field);
  }
  return fields;
}

function sameJson(a: unknown, b: unknown): boolean {
  const sorted = (value: unknown) =>
    JSON.stringify(value, (_key, item: unknown) =>
      item && typeof item === "object" && !Array.isArray(item)
        ? Object.fromEntries(Object.entries(item).sort(([x], [y]) => (x < y ? -1 : 1)))
        : item,
    );
  return sorted(a) === sorted(b);
}

function describeCase(c: FuzzCase, answer: Answer, detail: unknown): string {
  const body = typeof c.body === "string" ? c.body : `bytes:${Buffer.from(c.body).toString("base64")}`;
  return JSON.stringify({
    sent: {
      contentType: c.contentType,
      idempotencyKey: c.idempotencyKey,
      body: body.length > 300 ? `${body.slice(0, 300)}... (${body.length} characters)` : body,
    },
    got: { status: answer.status, body: answer.body },
    detail,
  });
}

/** A response's body as JSON when it is JSON, else its text. */
export async function answerOf(response: Response): Promise<Answer> {
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text, which every shape check refuses
  }
  return { status: response.status, headers: response.headers, body };
}
