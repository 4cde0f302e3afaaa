/** Load shedding at intake (src/orders/admission.ts), on a clock the test moves (no servers). */
import { describe, expect, test } from "bun:test";
import { IntakeOverloadedError } from "../../src/domain/errors.ts";
import { IntakeAdmission } from "../../src/orders/admission.ts";

/** A store step that settles when the test says so. */
function pendingStep() {
  let settle!: (error?: Error) => void;
  const promise = new Promise<string>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve("done"));
  });
  return { run: () => promise, settle };
}

function setup(shedAfterMs = 2_000) {
  let now = 0;
  const shed: number[] = [];
  const admission = new IntakeAdmission({
    shedAfterMs,
    now: () => now,
    onShed: (oldestWaitMs) => shed.push(oldestWaitMs),
  });
  const refused = () => {
    try {
      admission.admit();
      return null;
    } catch (error) {
      return error;
    }
  };
  return { admission, shed, refused, advance: (ms: number) => (now += ms) };
}

describe("IntakeAdmission", () => {
  test("admits while no step waits, and while the oldest has waited less than shedAfterMs", async () => {
    const { admission, refused, advance } = setup();
    expect(refused()).toBeNull();
    const step = pendingStep();
    const tracked = admission.track(step.run);
    advance(1_999);
    expect(admission.oldestWaitMs()).toBe(1_999);
    expect(refused()).toBeNull();
    step.settle();
    expect(await tracked).toBe("done");
  });

  test("refuses with a 503 naming Retry-After once the oldest step has waited shedAfterMs", async () => {
    const { admission, refused, advance, shed } = setup(2_500);
    const step = pendingStep();
    const tracked = admission.track(step.run);
    advance(2_500);
    const error = refused();
    expect(error).toBeInstanceOf(IntakeOverloadedError);
    expect((error as IntakeOverloadedError).status).toBe(503);
    // Whole seconds, rounded up: a client never comes back before the store had its time.
    expect((error as IntakeOverloadedError).retryAfterSeconds).toBe(3);
    expect(shed).toEqual([2_500]);
    step.settle();
    await tracked;
  });

  test("admits again as soon as the step that waited too long settles, failed or not", async () => {
    const { admission, refused, advance } = setup();
    const slow = pendingStep();
    const tracked = admission.track(slow.run);
    advance(3_000);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    slow.settle(new Error("aborted by its deadline"));
    await expect(tracked).rejects.toThrow("aborted by its deadline");
    expect(admission.oldestWaitMs()).toBe(0);
    expect(refused()).toBeNull();
  });

  test("the oldest step still waiting counts, whatever order steps settle in", async () => {
    const { admission, refused, advance } = setup();
    const first = pendingStep();
    const second = pendingStep();
    const third = pendingStep();
    const all = [admission.track(first.run)];
    advance(1_000);
    all.push(admission.track(second.run));
    advance(500);
    all.push(admission.track(third.run));
    advance(600);
    // first has waited 2,100 ms: refused.
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    first.settle();
    await all[0];
    // second is now the oldest: 1,100 ms.
    expect(admission.oldestWaitMs()).toBe(1_100);
    expect(refused()).toBeNull();
    third.settle();
    await all[2];
    expect(admission.oldestWaitMs()).toBe(1_100);
    advance(900);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    second.settle();
    await all[1];
    expect(refused()).toBeNull();
  });

  test("shedAfterMs 0 never sheds", async () => {
    const { admission, refused, advance, shed } = setup(0);
    const step = pendingStep();
    const tracked = admission.track(step.run);
    advance(600_000);
    expect(refused()).toBeNull();
    expect(shed).toEqual([]);
    step.settle();
    await tracked;
  });
});
