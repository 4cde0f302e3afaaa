import { describe, expect, test } from "bun:test";
import { ConfigError, databaseName, loadConfig, parseMongoUrl } from "../../src/config.ts";

describe("loadConfig", () => {
  test("defaults are the documented ones", () => {
    const config = loadConfig({});
    expect(config.PORT).toBe(3000);
    expect(config.MONGO_URL).toBe("mongodb://127.0.0.1:27017/orders");
    expect(config.REDIS_URL).toBe("redis://127.0.0.1:6379");
    expect(config.EXCHANGE_URL).toBeUndefined();
    expect(config.EXCHANGE_FAILURE_RATE).toBe(0.1);
    expect(config.EXCHANGE_LATENCY_MS).toBe(500);
  });

  test("numbers are parsed from strings", () => {
    expect(loadConfig({ PORT: "0", EXCHANGE_FAILURE_RATE: "0.3" })).toMatchObject({
      PORT: 0,
      EXCHANGE_FAILURE_RATE: 0.3,
    });
  });

  test("every bad variable is named in one error, secrets not echoed", () => {
    let error: unknown;
    try {
      loadConfig({
        PORT: "http",
        MONGO_URL: "postgres://user:secret@db/x",
        EXCHANGE_FAILURE_RATE: "2",
        LOG_LEVEL: "loud",
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    for (const name of ["PORT", "MONGO_URL", "EXCHANGE_FAILURE_RATE", "LOG_LEVEL"])
      expect(message).toContain(name);
    expect(message).not.toContain("secret");
    expect((error as ConfigError).problems).toHaveLength(4);
  });

  test("a claim timeout shorter than an attempt is refused", () => {
    expect(() => loadConfig({ CLAIM_TIMEOUT_MS: "2000", BREAKER_TIMEOUT_MS: "5000" })).toThrow(
      /CLAIM_TIMEOUT_MS/,
    );
  });
  test("the database comes from the URL path", () => {
    expect(databaseName("mongodb://h:1/orders?replicaSet=rs0")).toBe("orders");
  });
});

describe("rules that span variables", () => {
  /** The problems loadConfig reports for `env`; [] when it accepts it. */
  function problemsOf(env: Record<string, string>): string[] {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return (error as ConfigError).problems;
    }
  }

  test("the defaults satisfy every rule", () => {
    expect(problemsOf({})).toEqual([]);
    const config = loadConfig({});
    expect(config.REQUEST_DEADLINE_MS).toBe(5_000);
    expect(config.MONGO_TIMEOUT_MS).toBe(2_000);
    expect(config.CLAIM_TIMEOUT_MS - config.BREAKER_TIMEOUT_MS).toBeGreaterThanOrEqual(1_000);
  });

  test("a submit window (CLAIM_TIMEOUT_MS - BREAKER_TIMEOUT_MS) under 1000 ms is refused", () => {
    for (const [claim, breaker] of [
      ["5000", "5000"],
      ["5999", "5000"],
      ["1000", "500"],
      ["2000", "5000"],
    ] as const) {
      const problems = problemsOf({ CLAIM_TIMEOUT_MS: claim, BREAKER_TIMEOUT_MS: breaker });
      expect(problems, `${claim} - ${breaker}`).toHaveLength(1);
      expect(problems[0]).toStartWith("CLAIM_TIMEOUT_MS must be at least BREAKER_TIMEOUT_MS + 1000 ms");
    }
    expect(problemsOf({ CLAIM_TIMEOUT_MS: "6000", BREAKER_TIMEOUT_MS: "5000" })).toEqual([]);
    expect(problemsOf({ CLAIM_TIMEOUT_MS: "4000", BREAKER_TIMEOUT_MS: "3000" })).toEqual([]);
  });

  test("a request deadline shorter than 2 x MONGO_TIMEOUT_MS is refused", () => {
    for (const env of [
      { REQUEST_DEADLINE_MS: "3999" } as Record<string, string>,
      { REQUEST_DEADLINE_MS: "1000" },
      { MONGO_TIMEOUT_MS: "2501" },
      { MONGO_TIMEOUT_MS: "10000", REQUEST_DEADLINE_MS: "15000" },
    ]) {
      const problems = problemsOf(env);
      expect(problems, JSON.stringify(env)).toHaveLength(1);
      expect(problems[0]).toStartWith("REQUEST_DEADLINE_MS must be at least 2 x MONGO_TIMEOUT_MS");
    }
    expect(problemsOf({ REQUEST_DEADLINE_MS: "4000" })).toEqual([]);
    expect(problemsOf({ MONGO_TIMEOUT_MS: "2500" })).toEqual([]);
    expect(problemsOf({ MONGO_TIMEOUT_MS: "1000", REQUEST_DEADLINE_MS: "2500" })).toEqual([]);
    expect(problemsOf({ MONGO_TIMEOUT_MS: "10000", REQUEST_DEADLINE_MS: "20000" })).toEqual([]);
  });

  test("every broken rule is named in the one error, with the other bad variables", () => {
    const problems = problemsOf({
      PORT: "http",
      CLAIM_TIMEOUT_MS: "5000",
      BREAKER_TIMEOUT_MS: "5000",
      REQUEST_DEADLINE_MS: "3000",
    });
    expect(problems.map((p) => p.split(" ")[0])).toEqual(["PORT", "CLAIM_TIMEOUT_MS", "REQUEST_DEADLINE_MS"]);
  });

  test("a variable already invalid on its own is named once, not again by a rule", () => {
    expect(problemsOf({ REQUEST_DEADLINE_MS: "50" })).toEqual([
      'REQUEST_DEADLINE_MS must be an integer from 100 to 120000 (got "50")',
    ]);
    expect(problemsOf({ MONGO_TIMEOUT_MS: "soon" }).map((p) => p.split(" ")[0])).toEqual([
      "MONGO_TIMEOUT_MS",
    ]);
    expect(problemsOf({ BREAKER_TIMEOUT_MS: "9999999" }).map((p) => p.split(" ")[0])).toEqual([
      "BREAKER_TIMEOUT_MS",
    ]);
  });
});

describe("MONGO_URL: any connection string the driver accepts, with the database in its path", () => {
  /** The problem loadConfig reports for MONGO_URL, or undefined when it accepts the URL. */
  function mongoUrlProblem(url: string): string | undefined {
    try {
      loadConfig({ MONGO_URL: url });
      return undefined;
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems;
      expect(problems).toHaveLength(1);
      expect(problems[0]).toStartWith("MONGO_URL ");
      return problems[0];
    }
  }

  test.each([
    ["one host", "mongodb://127.0.0.1:27017/orders", "orders", ["127.0.0.1:27017"]],
    ["no port", "mongodb://mongo/orders", "orders", ["mongo:27017"]],
    [
      "several hosts and a replica set (k8s/base/secret.example.yaml)",
      "mongodb://a:27017,b:27017/orders?replicaSet=rs0",
      "orders",
      ["a:27017", "b:27017"],
    ],
    [
      "credentials, three hosts, options",
      "mongodb://orders:CHANGE_ME@mongo-0.mongo:27017,mongo-1.mongo:27017,mongo-2.mongo:27017/orders?replicaSet=rs0&authSource=admin&w=majority&journal=true",
      "orders",
      ["mongo-0.mongo:27017", "mongo-1.mongo:27017", "mongo-2.mongo:27017"],
    ],
    [
      "percent-encoded special characters in the credentials",
      "mongodb://us%40er:p%40ss%3Aw%2Fo%3Frd%23%25@h:1/orders?authSource=admin",
      "orders",
      ["h:1"],
    ],
    ["IPv6 host", "mongodb://[::1]:27017/orders_test-1", "orders_test-1", ["[::1]:27017"]],
    ["a percent-encoded database name", "mongodb://h:1/caf%C3%A9", "café", ["h:1"]],
  ])("%s", (_, url, database, hosts) => {
    expect(mongoUrlProblem(url)).toBeUndefined();
    expect(databaseName(url)).toBe(database);
    expect(parseMongoUrl(url)).toMatchObject({ database, hosts, srvHost: undefined });
    expect(loadConfig({ MONGO_URL: url }).MONGO_URL).toBe(url);
  });

  test("mongodb+srv parses without DNS (resolved when connecting)", () => {
    // .invalid never resolves (RFC 2606): a parser that looked it up would fail or hang.
    const url = "mongodb+srv://user:pw@cluster0.example.invalid/orders?retryWrites=true&w=majority";
    const started = performance.now();
    expect(mongoUrlProblem(url)).toBeUndefined();
    expect(parseMongoUrl(url)).toEqual({
      database: "orders",
      hosts: [],
      srvHost: "cluster0.example.invalid",
      search: "?retryWrites=true&w=majority",
    });
    expect(performance.now() - started).toBeLessThan(1_000);
    // The driver's own rules for SRV URLs apply.
    expect(mongoUrlProblem("mongodb+srv://cluster0.example.invalid:27017/orders")).toContain("port");
    expect(mongoUrlProblem("mongodb+srv://a.example.invalid,b.example.invalid/orders")).toBeDefined();
  });

  test("hosts and options of a URL without a database, for tools that add their own (test harness)", () => {
    expect(parseMongoUrl("mongodb://localhost:27017/?replicaSet=rs0", { requireDatabase: false })).toEqual({
      database: "",
      hosts: ["localhost:27017"],
      srvHost: undefined,
      search: "?replicaSet=rs0",
    });
    expect(parseMongoUrl("mongodb://a,b:2", { requireDatabase: false })).toMatchObject({
      database: "",
      hosts: ["a:27017", "b:2"],
      search: "",
    });
    expect(parseMongoUrl("mongodb://a/x?w=1", { requireDatabase: false }).database).toBe("x");
    expect(() => parseMongoUrl("garbage", { requireDatabase: false })).toThrow();
  });

  test.each([
    ["no path", "mongodb://h:27017"],
    ["an empty path", "mongodb://h:27017/"],
    ["options but no database", "mongodb://a:1,b:2/?replicaSet=rs0"],
    ["mongodb+srv without a database", "mongodb+srv://cluster0.example.invalid/?w=majority"],
  ])("a URL without a database is a config error naming MONGO_URL: %s", (_, url) => {
    expect(mongoUrlProblem(url)).toContain("no database in the path");
    expect(() => databaseName(url)).toThrow(/no database/);
  });

  test.each([
    ["garbage", "garbage"],
    ["another scheme", "postgres://db/orders"],
    ["no host", "mongodb:///orders"],
    ["a port out of range", "mongodb://h:99999/orders"],
    ["an unknown option", "mongodb://h/orders?replicaSett=rs0"],
    ["a bad option value", "mongodb://h/orders?authMechanism=NOPE"],
    ["an unescaped @ in the password", "mongodb://user:p@ss@h/orders"],
    ["a database name MongoDB refuses", "mongodb://h/my.db"],
    ["a database name with a space", "mongodb://h/my%20db"],
    ["a database name over 63 bytes", `mongodb://h/${"d".repeat(64)}`],
  ])("%s is refused", (_, url) => {
    expect(mongoUrlProblem(url)).toMatch(
      /^MONGO_URL must be a mongodb:\/\/ or mongodb\+srv:\/\/ connection string/,
    );
    expect(() => parseMongoUrl(url)).toThrow();
  });

  test("the problem never quotes the credentials", () => {
    for (const url of [
      "mongodb://orders:hunter2secret@h:99999/orders",
      "mongodb://orders:hunter2secret@h/orders?authMechanism=NOPE",
      "mongodb://orders:hunter2secret@h/",
      "mongodb://orders:hunter2secret@h/%zz",
      "mongodb://sneaky/user:hunter2secret@h/orders",
      "postgres://orders:hunter2secret@h/orders",
    ]) {
      const problem = mongoUrlProblem(url);
      expect(problem, url).toBeDefined();
      expect(problem, url).not.toContain("hunter2secret");
      expect(problem, url).not.toContain("sneaky");
    }
  });
});
