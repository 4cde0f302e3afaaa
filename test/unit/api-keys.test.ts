/** API keys: token generation, hashing and header parsing, and the authenticator's cache over a fake store. */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  generateApiKey,
  hashApiKey,
  isValidAccount,
  isValidLabel,
  MAX_TOKEN_LENGTH,
  parseBearer,
} from "../../src/auth/api-keys.ts";
import { type ApiKeyLookup, createAuthenticator } from "../../src/auth/authenticator.ts";

const TOKEN_SHAPE = /^ok_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

describe("generateApiKey", () => {
  test("ok_<12 hex id>_<32 bytes base64url>, the id inside the token", () => {
    const { id, token } = generateApiKey();
    const match = token.match(TOKEN_SHAPE);
    expect(match).not.toBeNull();
    expect(match![1]).toBe(id);
    expect(Buffer.from(match![2]!, "base64url")).toHaveLength(32);
    expect(parseBearer(`Bearer ${token}`)).toBe(token);
  });

  test("ids and secrets are random", () => {
    const keys = Array.from({ length: 200 }, generateApiKey);
    expect(new Set(keys.map((k) => k.id)).size).toBe(200);
    expect(new Set(keys.map((k) => k.token.slice(16))).size).toBe(200);
  });
});

describe("hashApiKey", () => {
  test("the SHA-256 of the token, hex", () => {
    const token = "ok_0123456789ab_secret";
    expect(hashApiKey(token)).toBe(createHash("sha256").update(token).digest("hex"));
    expect(hashApiKey(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey(`${token}x`)).not.toBe(hashApiKey(token));
  });
});

describe("parseBearer", () => {
  const token = generateApiKey().token;

  test("the token of a Bearer header, whatever the scheme's case, trimmed", () => {
    expect(parseBearer(`Bearer ${token}`)).toBe(token);
    expect(parseBearer(`bearer ${token}`)).toBe(token);
    expect(parseBearer(`BEARER   ${token}  `)).toBe(token);
    expect(parseBearer(`  Bearer ${token}`)).toBe(token);
  });

  test("null for no header, another scheme, no token, a bad character or too long a token", () => {
    expect(parseBearer(null)).toBeNull();
    expect(parseBearer("")).toBeNull();
    expect(parseBearer("Bearer")).toBeNull();
    expect(parseBearer("Bearer ")).toBeNull();
    expect(parseBearer(`Basic ${token}`)).toBeNull();
    expect(parseBearer(`Bearer${token}`)).toBeNull();
    expect(parseBearer(token)).toBeNull();
    expect(parseBearer(`Bearer ${token} extra`)).toBeNull();
    expect(parseBearer(`Bearer ${token}=`)).toBeNull();
    expect(parseBearer(`Bearer ${token}.x`)).toBeNull();
    expect(parseBearer("Bearer ok_é")).toBeNull();
    expect(parseBearer(`Bearer ${"a".repeat(MAX_TOKEN_LENGTH)}`)).toBe("a".repeat(MAX_TOKEN_LENGTH));
    expect(parseBearer(`Bearer ${"a".repeat(MAX_TOKEN_LENGTH + 1)}`)).toBeNull();
    expect(parseBearer(`Bearer ${"a".repeat(100_000)}`)).toBeNull();
  });
});

describe("account names and labels", () => {
  test("accounts: 1 to 64 characters of A-Z a-z 0-9 . _ -", () => {
    for (const ok of ["a", "acme", "Acme-Corp_2.eu", "x".repeat(64)]) expect(isValidAccount(ok)).toBe(true);
    for (const bad of ["", "x".repeat(65), "acme corp", "acme/1", "açme", "acme\n", "$where"]) {
      expect(isValidAccount(bad)).toBe(false);
    }
  });

  test("labels: one line, at most 200 characters, empty allowed", () => {
    expect(isValidLabel("")).toBe(true);
    expect(isValidLabel("trading desk (prod) — Zürich")).toBe(true);
    expect(isValidLabel("x".repeat(200))).toBe(true);
    expect(isValidLabel("x".repeat(201))).toBe(false);
    expect(isValidLabel("two\nlines")).toBe(false);
    expect(isValidLabel("tab\there")).toBe(false);
  });
});

/** An in-memory store counting its reads; `fail` makes the next reads reject. */
function fakeStore() {
  const active = new Map<string, { id: string; account: string }>();
  const store = {
    reads: 0,
    fail: null as Error | null,
    add(account: string) {
      const key = generateApiKey();
      active.set(key.token, { id: key.id, account });
      return key;
    },
    revoke(token: string) {
      active.delete(token);
    },
    async findByToken(token: string) {
      store.reads += 1;
      await Bun.sleep(0);
      if (store.fail) throw store.fail;
      return active.get(token) ?? null;
    },
  };
  return store satisfies ApiKeyLookup;
}

function clock(start = 1_000_000) {
  let time = start;
  return {
    now: () => time,
    advance(ms: number) {
      time += ms;
    },
  };
}

describe("createAuthenticator", () => {
  test("a known key gives its account and id; missing, malformed and unknown keys give null", async () => {
    const store = fakeStore();
    const key = store.add("acme");
    const auth = createAuthenticator(store);
    expect(await auth.authenticate(`Bearer ${key.token}`)).toEqual({ account: "acme", keyId: key.id });
    expect(await auth.authenticate(null)).toBeNull();
    expect(await auth.authenticate("Basic abc")).toBeNull();
    expect(await auth.authenticate(`Bearer ${generateApiKey().token}`)).toBeNull();
    // Malformed headers never reach the store.
    expect(store.reads).toBe(2);
  });

  test("a known key is read once per TTL; a revocation takes effect when the TTL runs out", async () => {
    const store = fakeStore();
    const time = clock();
    const key = store.add("acme");
    const auth = createAuthenticator(store, { cacheTtlMs: 5_000, now: time.now });
    const header = `Bearer ${key.token}`;
    for (let i = 0; i < 10; i += 1)
      expect(await auth.authenticate(header)).toMatchObject({ account: "acme" });
    expect(store.reads).toBe(1);

    store.revoke(key.token);
    time.advance(4_999);
    expect(await auth.authenticate(header)).toMatchObject({ account: "acme" });
    expect(store.reads).toBe(1);
    time.advance(1);
    expect(await auth.authenticate(header)).toBeNull();
    expect(store.reads).toBe(2);
  });

  test("an unknown key is remembered as unknown for the TTL: a flood of it reads the store once", async () => {
    const store = fakeStore();
    const time = clock();
    const auth = createAuthenticator(store, { cacheTtlMs: 5_000, now: time.now });
    const header = `Bearer ${generateApiKey().token}`;
    const answers = await Promise.all(Array.from({ length: 100 }, () => auth.authenticate(header)));
    expect(answers.every((answer) => answer === null)).toBe(true);
    for (let i = 0; i < 100; i += 1) expect(await auth.authenticate(header)).toBeNull();
    expect(store.reads).toBe(1);
    time.advance(5_000);
    expect(await auth.authenticate(header)).toBeNull();
    expect(store.reads).toBe(2);
  });

  test("concurrent requests with one key share one store read", async () => {
    const store = fakeStore();
    const key = store.add("acme");
    const auth = createAuthenticator(store);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => auth.authenticate(`Bearer ${key.token}`)),
    );
    expect(answers.every((answer) => answer?.account === "acme")).toBe(true);
    expect(store.reads).toBe(1);
  });

  test("a store error reaches the caller and is not remembered", async () => {
    const store = fakeStore();
    const key = store.add("acme");
    const auth = createAuthenticator(store);
    const header = `Bearer ${key.token}`;
    store.fail = new Error("server selection timed out");
    const failures = await Promise.allSettled([auth.authenticate(header), auth.authenticate(header)]);
    expect(failures.map((f) => f.status)).toEqual(["rejected", "rejected"]);
    expect((failures[0] as PromiseRejectedResult).reason).toBe(store.fail);
    expect(store.reads).toBe(1);

    store.fail = null;
    expect(await auth.authenticate(header)).toEqual({ account: "acme", keyId: key.id });
    expect(store.reads).toBe(2);
  });

  test("a store that throws before its first await is not remembered either", async () => {
    let reads = 0;
    const auth = createAuthenticator({
      findByToken(): Promise<null> {
        reads += 1;
        throw new Error("synchronous failure");
      },
    });
    const header = `Bearer ${generateApiKey().token}`;
    await expect(auth.authenticate(header)).rejects.toThrow("synchronous failure");
    await expect(auth.authenticate(header)).rejects.toThrow("synchronous failure");
    expect(reads).toBe(2);
  });

  test("at most maxEntries answers are kept, the oldest evicted first", async () => {
    const store = fakeStore();
    const keys = Array.from({ length: 4 }, () => store.add("acme"));
    const auth = createAuthenticator(store, { maxEntries: 3 });
    const ask = (i: number) => auth.authenticate(`Bearer ${keys[i]!.token}`);
    for (const i of [0, 1, 2]) await ask(i);
    expect(store.reads).toBe(3);
    for (const i of [0, 1, 2]) await ask(i);
    expect(store.reads).toBe(3);

    await ask(3); // evicts key 0, the oldest
    expect(store.reads).toBe(4);
    for (const i of [1, 2, 3]) await ask(i);
    expect(store.reads).toBe(4);
    await ask(0);
    expect(store.reads).toBe(5);

    // Many distinct unknown keys cannot grow the cache past its bound: the known keys fall out.
    for (let i = 0; i < 50; i += 1) await auth.authenticate(`Bearer ${generateApiKey().token}`);
    const before = store.reads;
    for (const i of [0, 1, 2, 3]) await ask(i);
    expect(store.reads).toBe(before + 4);
  });

  test("cacheTtlMs 0 reads the store on every request", async () => {
    const store = fakeStore();
    const key = store.add("acme");
    const auth = createAuthenticator(store, { cacheTtlMs: 0 });
    for (let i = 0; i < 3; i += 1) await auth.authenticate(`Bearer ${key.token}`);
    expect(store.reads).toBe(3);
  });
});
