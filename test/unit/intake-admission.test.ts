/** Load shedding at intake (src/orders/admission.ts), on a clock the test moves (no servers). */
import { describe, expect, test } from "bun:test";
import { IntakeOverloadedError } from "../../src/domain/errors.ts";
import { type AdmissionState, IntakeAdmission, OPEN_MS } from "../../src/orders/admission.ts";

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
  let shed = 0;
  const states: AdmissionState[] = [];
  const admission = new IntakeAdmission({
    shedAfterMs,
    now: () => now,
    onShed: () => {
      shed += 1;
    },
    onStateChange: (state) => states.push(state),
  });
  /** null when admitted, else the error admit() threw. */
  const refused = () => {
    try {
      admission.admit();
      return null;
    } catch (error) {
      return error;
    }
  };
  /** A step tracked now that settles, after `ms` of the clock, when `settle` is called. */
  const step = () => {
    const pending = pendingStep();
    const tracked = admission.track(pending.run);
    tracked.catch(() => {});
    return { tracked, settle: pending.settle };
  };
  return { admission, refused, step, states, shedCount: () => shed, advance: (ms: number) => (now += ms) };
}

describe("IntakeAdmission", () => {
  test("closed: admits while no step waits, and while the oldest has waited less than shedAfterMs", async () => {
    const { admission, refused, step, advance, states } = setup();
    expect(refused()).toBeNull();
    const slow = step();
    advance(1_999);
    expect(admission.oldestWaitMs()).toBe(1_999);
    expect(refused()).toBeNull();
    slow.settle();
    expect(await slow.tracked).toBe("done");
    expect(refused()).toBeNull();
    expect(states).toEqual([]);
  });

  test("a step still waiting at shedAfterMs opens it: 503 with Retry-After in whole seconds", async () => {
    const { admission, refused, step, advance, states, shedCount } = setup(2_500);
    const stuck = step();
    advance(2_500);
    const error = refused();
    expect(error).toBeInstanceOf(IntakeOverloadedError);
    expect((error as IntakeOverloadedError).status).toBe(503);
    // The next trial is OPEN_MS away: the least Retry-After can say, 1 s.
    expect((error as IntakeOverloadedError).retryAfterSeconds).toBe(1);
    expect(admission.currentState).toBe("open");
    expect(states).toEqual(["open"]);
    expect(shedCount()).toBe(1);
    stuck.settle();
    await stuck.tracked;
  });

  test("a step that settled only after shedAfterMs, failed or not, opens it too", async () => {
    const { admission, refused, step, advance } = setup();
    const slow = step();
    advance(2_000);
    slow.settle(new Error("server selection timed out"));
    await expect(slow.tracked).rejects.toThrow("server selection timed out");
    expect(admission.oldestWaitMs()).toBe(0);
    expect(admission.currentState).toBe("open");
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
  });

  test("open for OPEN_MS, then one trial order; a step answered in time closes it", async () => {
    const { admission, refused, step, advance, states } = setup();
    const slow = step();
    advance(2_000);
    slow.settle(new Error("timed out"));
    await slow.tracked.catch(() => {});
    advance(OPEN_MS - 1);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    advance(1);
    expect(refused()).toBeNull(); // the trial
    expect(admission.currentState).toBe("half-open");
    expect(refused()).toBeInstanceOf(IntakeOverloadedError); // every other order while it runs
    const trial = step();
    advance(150);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    trial.settle();
    await trial.tracked;
    expect(admission.currentState).toBe("closed");
    expect(refused()).toBeNull();
    expect(refused()).toBeNull();
    expect(states).toEqual(["open", "half-open", "closed"]);
  });

  test("a trial whose step waits shedAfterMs opens it again; a trial that never reached the store is replaced after shedAfterMs", async () => {
    const { admission, refused, step, advance, states } = setup();
    const first = step();
    advance(2_000);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    first.settle(new Error("timed out"));
    await first.tracked.catch(() => {});
    advance(OPEN_MS);
    // A trial that ended before the store (a 422, say): another one only shedAfterMs later.
    expect(refused()).toBeNull();
    advance(1_999);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    advance(1);
    expect(refused()).toBeNull();
    // This trial reaches the stalled store and waits.
    const trial = step();
    advance(2_000);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    expect(admission.currentState).toBe("open");
    trial.settle(new Error("timed out"));
    await trial.tracked.catch(() => {});
    expect(states).toEqual(["open", "half-open", "open"]);
  });

  test("stays open while a step from before the stall still waits, whatever order steps settle in", async () => {
    const { admission, refused, step, advance } = setup();
    const old = step();
    advance(1_000);
    const younger = step();
    advance(1_000);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    younger.settle(); // waited 1,000 ms: in time, but the breaker is open, not half-open
    await younger.tracked;
    advance(2_500);
    expect(admission.oldestWaitMs()).toBe(4_500);
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    old.settle(new Error("aborted by its deadline"));
    await old.tracked.catch(() => {});
    advance(OPEN_MS);
    expect(refused()).toBeNull();
  });

  test("a late answer while open (the store came back) makes it half-open at once; in closed, it opens it", async () => {
    const { admission, refused, step, advance, states } = setup();
    const overloaded = step();
    advance(2_100);
    overloaded.settle(); // answered, but after T: overload
    await overloaded.tracked;
    expect(admission.currentState).toBe("open");
    const stuck = step(); // admitted before the breaker opened, still at the store
    advance(500);
    stuck.settle();
    await stuck.tracked; // waited 500 ms: in time, but only a half-open breaker closes on it
    expect(admission.currentState).toBe("open");
    const late = step();
    advance(2_500);
    late.settle(); // answered after 2,500 ms while open
    await late.tracked;
    expect(admission.currentState).toBe("half-open");
    expect(refused()).toBeNull(); // the trial, without waiting out T
    expect(refused()).toBeInstanceOf(IntakeOverloadedError);
    expect(states).toEqual(["open", "half-open"]);
  });

  test("shedAfterMs 0 never sheds", async () => {
    const { refused, step, advance, shedCount, states } = setup(0);
    const stuck = step();
    advance(600_000);
    expect(refused()).toBeNull();
    stuck.settle(new Error("gone"));
    await stuck.tracked.catch(() => {});
    expect(refused()).toBeNull();
    expect(shedCount()).toBe(0);
    expect(states).toEqual([]);
  });
});
