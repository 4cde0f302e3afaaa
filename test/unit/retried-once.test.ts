/**
 * retriedOnce (src/adapters/mongo/client.ts): what the driver's retryable writes would retry, for the
 * writes it cannot retry itself (the final outcomes' bulkWrites of multi-updates). The driver's own error
 * classes, as a failover or a lost connection raise them.
 */
import { expect, test } from "bun:test";
import { MongoNetworkError, MongoServerError } from "mongodb";
import { retriedOnce } from "../../src/adapters/mongo/client.ts";

/** A write that fails with each of `failures` in turn, then answers "done"; counts its calls. */
function flakyWrite(...failures: Error[]) {
  const write = async () => {
    write.calls += 1;
    const failure = failures.shift();
    if (failure) throw failure;
    return "done";
  };
  write.calls = 0;
  return write;
}

const failover = () => {
  const error = new MongoServerError({ message: "not primary", code: 10107 });
  error.addErrorLabel("RetryableWriteError");
  return error;
};

test("a network error or a failover is retried once, and the second answer is the caller's", async () => {
  for (const failure of [new MongoNetworkError("connection reset"), failover()]) {
    const write = flakyWrite(failure);
    expect(await retriedOnce(write)).toBe("done");
    expect(write.calls).toBe(2);
  }
});

test("only once: a second retryable failure reaches the caller", async () => {
  const write = flakyWrite(new MongoNetworkError("reset"), new MongoNetworkError("reset again"));
  await expect(retriedOnce(write)).rejects.toThrow("reset again");
  expect(write.calls).toBe(2);
});

test("any other failure is not retried: a refusal, a duplicate key, an aborted deadline", async () => {
  const failures = [
    new MongoServerError({ message: "E11000 duplicate key", code: 11000 }),
    new MongoServerError({ message: "write concern timed out", code: 64 }),
    new DOMException("The operation timed out", "TimeoutError"),
  ];
  for (const failure of failures) {
    const write = flakyWrite(failure);
    await expect(retriedOnce(write)).rejects.toBe(failure);
    expect(write.calls).toBe(1);
  }
});
