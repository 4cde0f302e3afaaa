import { describe, expect, test } from "bun:test";
import { ConfigError, databaseName, loadConfig } from "../../src/config.ts";

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
