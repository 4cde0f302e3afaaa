/**
 * Group commit (src/adapters/mongo/group-commit.ts), with a flush the test controls: what shares a batch,
 * when a batch is written, and that each caller gets its own outcome.
 */
import { expect, test } from "bun:test";
import { createGroupCommit, type GroupCommitOptions } from "../../src/adapters/mongo/group-commit.ts";

/** A store whose writes the test finishes by hand; every batch it was given, in order. */
function manualStore() {
  const batches: number[][] = [];
  const pending: Array<() => void> = [];
  return {
    batches,
    flush: (items: number[]) => {
      batches.push(items);
      return new Promise<(Error | null)[]>((resolve) =>
        pending.push(() => resolve(items.map((item) => (item < 0 ? new Error(`bad ${item}`) : null)))),
      );
    },
    /** Finishes the oldest write at the store. */
    finishOne: () => pending.shift()?.(),
    get atStore() {
      return pending.length;
    },
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A group commit over `store`: a long window, flushWhenIdle on, unless the test says otherwise. */
function groupOver(
  store: ReturnType<typeof manualStore>,
  options: Partial<Omit<GroupCommitOptions<number>, "flush">> = {},
) {
  return createGroupCommit({
    windowMs: 60_000,
    maxBatch: 64,
    maxConcurrentFlushes: 4,
    flushWhenIdle: true,
    ...options,
    flush: store.flush,
  });
}

test("flushWhenIdle: with nothing at the store, one turn's calls are written at once, without the window", async () => {
  const store = manualStore();
  const group = groupOver(store);
  const written = [1, 2, 3].map((n) => group.submit(n));
  await turn();
  expect(store.batches).toEqual([[1, 2, 3]]);
  store.finishOne();
  await Promise.all(written);
});

test("flushWhenIdle: while a batch is at the store, later calls gather for the window into the next one", async () => {
  const store = manualStore();
  const group = groupOver(store, { windowMs: 20 });
  const first = group.submit(1);
  await turn();
  const later = [2, 3].map((n) => group.submit(n));
  await turn();
  await turn();
  expect(store.batches).toEqual([[1]]); // 2 and 3 wait for the window, not for the next turn
  await Bun.sleep(40);
  expect(store.batches).toEqual([[1], [2, 3]]);
  store.finishOne();
  store.finishOne();
  await Promise.all([first, ...later]);
});

test("without flushWhenIdle, even a lone call waits for the window", async () => {
  const store = manualStore();
  const group = groupOver(store, { windowMs: 30, flushWhenIdle: false });
  const written = group.submit(1);
  await turn();
  await turn();
  expect(store.batches).toEqual([]);
  await Bun.sleep(60);
  expect(store.batches).toEqual([[1]]);
  store.finishOne();
  await written;
});

test("a full batch is written at once; with every flush slot busy, calls wait and the next batch grows", async () => {
  const store = manualStore();
  const group = groupOver(store, { maxBatch: 2, maxConcurrentFlushes: 1 });
  const calls = [1, 2, 3, 4, 5].map((n) => group.submit(n));
  await turn();
  expect(store.batches).toEqual([[1, 2]]);
  expect(group.pending).toBe(3);
  store.finishOne(); // the slot frees: the next batch is full, so it goes at once
  await turn();
  expect(store.batches).toEqual([
    [1, 2],
    [3, 4],
  ]);
  store.finishOne();
  await turn();
  await turn();
  expect(store.batches).toEqual([[1, 2], [3, 4], [5]]); // idle again: the rest goes at the next turn
  store.finishOne();
  await Promise.all(calls);
});

test("each caller gets its own outcome from a shared batch", async () => {
  const store = manualStore();
  const group = groupOver(store);
  const outcomes = [1, -2, 3].map((n) =>
    group.submit(n).then(
      () => "written",
      (error: Error) => error.message,
    ),
  );
  await turn();
  expect(store.batches).toEqual([[1, -2, 3]]);
  store.finishOne();
  expect(await Promise.all(outcomes)).toEqual(["written", "bad -2", "written"]);
});

test("a batch can answer each caller with a value of its own, and a missing answer is an error", async () => {
  const group = createGroupCommit<number, string>({
    windowMs: 60_000,
    maxBatch: 64,
    maxConcurrentFlushes: 1,
    flushWhenIdle: true,
    // The store answers every item but the last one.
    flush: async (items) =>
      items.slice(0, -1).map((item) => (item < 0 ? new Error(`bad ${item}`) : `doubled ${item * 2}`)),
  });
  const outcomes = [1, -2, 3, 4].map((n) =>
    group.submit(n).then(
      (value) => value,
      (error: Error) => error.message,
    ),
  );
  expect(await Promise.all(outcomes)).toEqual([
    "doubled 2",
    "bad -2",
    "doubled 6",
    "group commit returned no result for this item",
  ]);
});
