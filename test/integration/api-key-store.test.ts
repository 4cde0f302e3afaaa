/**
 * API keys in MongoDB (`api_keys`) against the harness's MongoDB-wire server, and the `orders keys`
 * command as a real process: create prints the token once on its last line, list never shows a hash
 * or a token, revoke takes the key out of findByToken.
 */
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { resolve } from "node:path";
import { MongoServerError } from "mongodb";
import { MongoApiKeyStore } from "../../src/adapters/mongo/api-key-store.ts";
import { DUPLICATE_KEY } from "../../src/adapters/mongo/client.ts";
import { generateApiKey, hashApiKey } from "../../src/auth/api-keys.ts";
import { isolatedEnv, mongoFor, ROOT, useServers } from "../support/system.ts";

// Real servers take longer than bun's 5 s default (bunfig's timeout is not applied).
setDefaultTimeout(60_000);

const servers = useServers();

let env: Record<string, string>;
let mongo: ReturnType<typeof mongoFor>;
let store: MongoApiKeyStore;
beforeEach(async () => {
  env = isolatedEnv(servers);
  mongo = mongoFor(env);
  store = new MongoApiKeyStore(mongo.db, { timeoutMs: 2_000 });
  await store.ensureIndexes();
});
afterEach(async () => {
  await mongo?.client.close();
});

describe("MongoApiKeyStore", () => {
  test("create stores the token's hash, never the token; findByToken finds the key by it", async () => {
    const { key, token } = await store.create({ account: "acme", label: "trading desk" });
    expect(token).toMatch(new RegExp(`^ok_${key.id}_[A-Za-z0-9_-]{43}$`));
    expect(key).toEqual({
      id: expect.stringMatching(/^[0-9a-f]{12}$/),
      account: "acme",
      label: "trading desk",
      createdAt: expect.any(Date),
      revokedAt: null,
    });
    expect(key).not.toHaveProperty("hash");

    const documents = await mongo.db.collection("api_keys").find().toArray();
    expect(documents).toEqual([
      {
        _id: key.id as never,
        account: "acme",
        label: "trading desk",
        hash: hashApiKey(token),
        created_at: key.createdAt,
        revoked_at: null,
      },
    ]);
    expect(JSON.stringify(documents)).not.toContain(token.slice(16));

    expect(await store.findByToken(token)).toEqual({ id: key.id, account: "acme" });
    expect(await store.findByToken(generateApiKey().token)).toBeNull();
    expect(await store.findByToken(`${token}x`)).toBeNull();
    expect(await store.findByToken(hashApiKey(token))).toBeNull();
  });

  test("create refuses an invalid account or label before writing anything", async () => {
    await expect(store.create({ account: "", label: "" })).rejects.toMatchObject({
      code: "API_KEY_ACCOUNT_INVALID",
    });
    await expect(store.create({ account: "acme corp", label: "" })).rejects.toThrow(/invalid account/);
    await expect(store.create({ account: "a".repeat(65), label: "" })).rejects.toThrow(/invalid account/);
    await expect(store.create({ account: "acme", label: "two\nlines" })).rejects.toMatchObject({
      code: "API_KEY_LABEL_INVALID",
    });
    expect(await mongo.db.collection("api_keys").countDocuments()).toBe(0);
  });

  test("list: newest first, by account when asked, never a hash", async () => {
    const first = await store.create({ account: "acme", label: "one" });
    await Bun.sleep(5);
    const second = await store.create({ account: "globex", label: "two" });
    await Bun.sleep(5);
    const third = await store.create({ account: "acme", label: "three" });

    const all = await store.list();
    expect(all.map((k) => k.id)).toEqual([third.key.id, second.key.id, first.key.id]);
    for (const key of all) {
      expect(key).not.toHaveProperty("hash");
      expect(Object.keys(key).sort()).toEqual(["account", "createdAt", "id", "label", "revokedAt"]);
    }
    expect((await store.list("acme")).map((k) => k.id)).toEqual([third.key.id, first.key.id]);
    expect(await store.list("initech")).toEqual([]);
  });

  test("revoke: once (the first time is kept), then already; missing for an unknown id", async () => {
    const { key, token } = await store.create({ account: "acme", label: "" });
    const other = await store.create({ account: "acme", label: "" });

    expect(await store.revoke(key.id)).toBe("revoked");
    expect(await store.findByToken(token)).toBeNull();
    const revokedAt = (await store.list()).find((k) => k.id === key.id)?.revokedAt;
    expect(revokedAt).toBeInstanceOf(Date);

    await Bun.sleep(5);
    expect(await store.revoke(key.id)).toBe("already");
    expect((await store.list()).find((k) => k.id === key.id)?.revokedAt).toEqual(revokedAt!);
    expect(await store.revoke("000000000000")).toBe("missing");

    // The other key of the account is untouched.
    expect(await store.findByToken(other.token)).toEqual({ id: other.key.id, account: "acme" });
  });

  test("the hash index is unique: a second key with the same hash is refused", async () => {
    const indexes = await mongo.db.collection("api_keys").listIndexes().toArray();
    expect(indexes.find((index) => index.name === "hash_unique")).toMatchObject({
      key: { hash: 1 },
      unique: true,
    });

    const { key } = await store.create({ account: "acme", label: "" });
    const stored = await mongo.db.collection("api_keys").findOne({ _id: key.id as never });
    const copy = { ...stored!, _id: "ffffffffffff" as never };
    const error = await mongo.db
      .collection("api_keys")
      .insertOne(copy)
      .then(
        () => null,
        (caught: unknown) => caught,
      );
    expect(error).toBeInstanceOf(MongoServerError);
    expect((error as MongoServerError).code).toBe(DUPLICATE_KEY);
    expect(await mongo.db.collection("api_keys").countDocuments()).toBe(1);
  });

  test("ensureIndexes is idempotent", async () => {
    await store.ensureIndexes();
    await store.ensureIndexes();
    const names = (await mongo.db.collection("api_keys").listIndexes().toArray()).map((i) => i.name);
    expect(names.filter((name) => name === "hash_unique")).toHaveLength(1);
  });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `bun src/main.ts keys ...` as a real process, killed if it runs past 30 s. */
async function keys(...args: string[]): Promise<Run> {
  const proc = Bun.spawn(["bun", resolve(ROOT, "src/main.ts"), "keys", ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 30_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

describe("orders keys (a real process)", () => {
  test("create prints the token alone on its last line; list shows it active, then revoked", async () => {
    const created = await keys("create", "--account", "acme", "--label", "x");
    expect(created).toMatchObject({ code: 0, stderr: "" });
    const out = lines(created.stdout);
    const token = out.at(-1)!;
    const id = token.match(/^ok_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/)?.[1];
    expect(id).toBeDefined();
    // Printed once: nowhere but its own line.
    expect(created.stdout.split(token.slice(16))).toHaveLength(2);
    expect(out.length).toBeGreaterThan(1);
    expect(out.slice(0, -1).join("\n")).toContain(id!);

    expect(await store.findByToken(token)).toEqual({ id: id!, account: "acme" });

    const listed = await keys("list");
    expect(listed).toMatchObject({ code: 0, stderr: "" });
    expect(lines(listed.stdout)).toHaveLength(1);
    const [listedId, account, label, createdAt, state] = lines(listed.stdout)[0]!.split("\t");
    expect({ listedId, account, label, state }).toEqual({
      listedId: id!,
      account: "acme",
      label: '"x"',
      state: "active",
    });
    expect(new Date(createdAt!).toISOString()).toBe(createdAt!);
    expect(listed.stdout).not.toContain(token.slice(16));
    expect(listed.stdout).not.toContain(hashApiKey(token));

    const revoked = await keys("revoke", id!);
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked ${id}\n` });
    const after = lines((await keys("list", "--account", "acme")).stdout);
    expect(after).toHaveLength(1);
    expect(after[0]!.split("\t")[4]).toMatch(/^revoked \d{4}-\d\d-\d\dT/);
    expect(await store.findByToken(token)).toBeNull();

    // Revoking again is still success; an unknown id is 1.
    expect((await keys("revoke", id!)).code).toBe(0);
    const missing = await keys("revoke", "000000000000");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no key 000000000000");
  });

  test("usage errors exit 2 without touching MongoDB", async () => {
    for (const args of [
      [],
      ["rotate"],
      ["create"],
      ["create", "--account"],
      ["create", "--account", "acme corp"],
      ["create", "--account", "acme", "--bogus", "1"],
      ["list", "--label", "x"],
      ["revoke"],
      ["revoke", "a", "b"],
    ]) {
      const run = await keys(...args);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain("usage: orders keys");
      expect(run.stdout).toBe("");
    }
    expect(await mongo.db.collection("api_keys").countDocuments()).toBe(0);
  });
});
